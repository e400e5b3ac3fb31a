"""The plain data that flows through a reconcile pass.

``Observation → Verdict → Proposal → Decision → Outcome``: frozen values, no I/O, so
the decision core can be tested as a table and replayed on any clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Quality(StrEnum):
    """How far an observation can be trusted."""

    GOOD = "good"
    MISSING = "missing"  # the backend answered, but with no usable samples
    ERROR = "error"  # the backend failed or did not answer


class VerdictState(StrEnum):
    OK = "ok"
    PENDING = "pending"  # violating, but not for the whole sustained window yet
    BREACH = "breach"
    RECOVERING = "recovering"  # back inside the objective, not yet past the clearing line
    UNKNOWN = "unknown"  # no trustworthy data: never a breach, never a reason to scale in


class DecisionKind(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PENDING_APPROVAL = "pending-approval"  # allowed by every guard, waiting for a human


class OutcomeKind(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WOULD_RUN = "would-run"


class Efficacy(StrEnum):
    """Whether an action helped, judged after it had time to settle."""

    IMPROVED = "improved"
    NOT_IMPROVED = "not-improved"
    FAILED = "failed"


class Mode(StrEnum):
    DRY_RUN = "dry-run"
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric point; ``value`` is None for an empty bucket."""

    ts: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one signal said about one target at one time."""

    target: str
    signal: str
    samples: tuple[Sample, ...]
    quality: Quality
    observed_at: datetime
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The state of one objective, with the value and reason that led to it."""

    objective: str
    state: VerdictState
    value: float | None
    threshold: float
    reason: str
    worst: float | None = None  # the value most against the objective in the samples read
    error: str | None = None  # the signal could not be read: why (``HTTP 403 …``, a timeout)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used by the audit log and ``plan --output json`` (``error`` only
        when the signal failed)."""
        body: dict[str, Any] = {
            "objective": self.objective,
            "state": self.state.value,
            "value": self.value,
            "threshold": self.threshold,
            "reason": self.reason,
            "worst": self.worst,
        }
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class ContainerSize:
    name: str
    cpu: float
    memory: str


@dataclass(frozen=True)
class Throughput:
    """A Cosmos DB throughput offer: manual RU/s or an autoscale maximum."""

    manual: int | None
    autoscale_max: int | None
    minimum: int  # the service's floor (``minimumThroughput``)
    instant_maximum: int | None  # above this a raise is a partition split that takes hours
    pending: bool = False  # ``offerReplacePending``: a change is still being applied

    @property
    def provisioned(self) -> int:
        """The most RU/s the offer serves (the autoscale maximum when autoscaling)."""
        return self.manual if self.manual is not None else int(self.autoscale_max or 0)


@dataclass(frozen=True)
class CacheSku:
    """An Azure Cache for Redis size: tier (Basic, Standard, Premium), family and capacity."""

    name: str
    family: str
    capacity: int


@dataclass(frozen=True)
class RevisionInfo:
    """A Container App revision, as rollback needs it."""

    name: str
    created: datetime | None
    active: bool
    traffic: int  # percent of ingress traffic
    healthy: bool | None = None  # the platform's health state (None: not reported)
    # what makes it a deploy: its containers' images and settings, not their size or the
    # scale (a revision a scale change made has the build of the one it was made from)
    build: str | None = None


@dataclass(frozen=True)
class ResourceState:
    """The parts of a resource the planner reasons about, as last read from Azure."""

    resource_id: str
    min_replicas: int = 0
    max_replicas: int = 10
    containers: tuple[ContainerSize, ...] = ()
    latest_revision: str | None = None
    replicas: int | None = None  # running now (an autoscaler may hold more than the minimum)
    tags: Mapping[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None  # the last change anyone made (ARM systemData)
    throughput: Throughput | None = None  # Cosmos DB offers
    cache: CacheSku | None = None  # Redis caches
    cache_state: str | None = None  # the cache's provisioningState (Scaling, Succeeded …)
    revisions: tuple[RevisionInfo, ...] = ()  # Container Apps in multiple-revision mode
    multiple_revisions: bool = False
    # Container Apps: the newest revision (``latest_revision`` is the newest *ready* one:
    # they differ while a template change's revision is provisioned)
    newest_revision: str | None = None
    # multiple mode, traffic on named revisions only: a new revision would get none of it
    traffic_pinned: bool = False

    @property
    def provisioning(self) -> str | None:
        """The revision a template change made that is not ready yet, if any."""
        newest = self.newest_revision
        return newest if newest is not None and newest != self.latest_revision else None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly picture for audit lines and the demo's summary."""
        return {
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "containers": [
                {"name": c.name, "cpu": c.cpu, "memory": c.memory} for c in self.containers
            ],
            "latestRevision": self.latest_revision,
            "replicas": self.replicas,
            "traffic": {r.name: r.traffic for r in self.revisions if r.traffic},
        }


@dataclass(frozen=True)
class ActionRecord:
    """An action that ran (or would have, in dry-run): what guards count."""

    ts: datetime
    action: str
    outcome: OutcomeKind


@dataclass(frozen=True)
class Proposal:
    """The next ladder step, with the exact parameters it would apply."""

    action: str
    step_index: int
    params: Mapping[str, Any]
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class Decision:
    """A proposal that went through the guards (or nothing to do, with why)."""

    kind: DecisionKind
    reason: str
    proposal: Proposal | None = None
    guard: str | None = None  # which guard denied, if any


@dataclass(frozen=True)
class Outcome:
    """What happened when (or instead of when) an action ran."""

    kind: OutcomeKind
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    detail: str = ""
    busy: bool = False  # the resource was busy with another operation: nothing ran
