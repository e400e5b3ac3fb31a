"""Revisions of an emulated Container App: how good each is, and who gets traffic.

As in Azure, every change to an app's ``properties.template`` (containers, CPU and
memory, ``scale``) is a revision-scope change: it makes a new revision, built from the
template as it now stands, which is provisioned for a while before it is ready. In
single-revision mode the new revision takes over once it is ready and the old one is
deactivated then (until that moment the old one serves). In multiple-revision mode the
older revisions stay active; traffic on ``latestRevision: true`` follows the newest
ready revision, traffic pinned to named revisions stays where it is — a new revision
gets 0 % there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .workload import AppConfig

LATEST = ""  # the traffic key of ``latestRevision: true``
READY_AFTER = timedelta(seconds=30)  # a new revision's provisioning, unless declared


@dataclass(frozen=True)
class RevisionSpec:
    """One revision as the scenario declares it."""

    name: str
    error_rate_percent: float = 0.1  # requests it fails
    p95_ms: float = 250.0  # its 95th-percentile duration when not overloaded
    traffic_percent: int = 0  # its share of ingress traffic at the start
    age: timedelta = timedelta(days=1)  # how long before the scenario's start it was created
    image: str | None = None  # its first container's image (None: the app's)


@dataclass(frozen=True)
class RequestSample:
    """What Application Insights would have logged for one app in one minute."""

    requests: float
    failed: float
    p95_ms: float
    p99_ms: float
    dependency_failure_percent: float
    exceptions: float


@dataclass
class Revision:
    """One revision: its own template (containers and scale), how good its build is, and
    when it was created, became ready and was deactivated."""

    name: str
    config: AppConfig
    quality: RevisionSpec
    created: datetime
    ready: datetime
    deactivated: datetime | None = None
    restarts: list[datetime] = field(default_factory=list)

    def active(self, at: datetime) -> bool:
        return self.created <= at and (self.deactivated is None or at < self.deactivated)

    def is_ready(self, at: datetime) -> bool:
        return self.ready <= at


def build_of(config: AppConfig) -> str:
    """What makes a deploy: each container's image and every other field but its size
    (env, command, probes …). Scale and CPU/memory alone make a revision, not a deploy."""
    return json.dumps([(c.name, c.image, c.extra) for c in config.containers])


def with_image(config: AppConfig, image: str | None) -> AppConfig:
    """``config`` with its first container running ``image`` (unchanged for None)."""
    if image is None or not config.containers:
        return config
    first, *rest = config.containers
    return replace(config, containers=(replace(first, image=image), *rest))


def revision_name(app: str, number: int) -> str:
    """A generated revision name, ``<app>--<7 characters>`` as Azure makes them."""
    return f"{app}--{hashlib.sha256(f'{app}|{number}'.encode()).hexdigest()[:7]}"


class Revisions:
    """An app's revisions, oldest first, and its traffic rules over time."""

    def __init__(self, items: list[Revision], multiple: bool, ready_after: timedelta) -> None:
        self.items = sorted(items, key=lambda r: r.created)
        self.multiple = multiple
        self.ready_after = ready_after

    @property
    def latest(self) -> Revision:
        return self.items[-1]

    def find(self, name: str) -> Revision | None:
        lowered = name.lower()
        return next((r for r in self.items if r.name.lower() == lowered), None)

    def latest_ready(self, at: datetime) -> Revision:
        """The newest revision active and ready at ``at`` (the oldest one before any)."""
        for revision in reversed(self.items):
            if revision.active(at) and revision.is_ready(at):
                return revision
        return self.items[0]

    def weights(self, at: datetime, traffic: dict[str, int]) -> dict[str, int]:
        """Who serves at ``at``, in percent: in single mode the newest ready revision; in
        multiple mode the split, ``latestRevision`` resolved to the newest ready one."""
        if not self.multiple:
            return {self.latest_ready(at).name: 100}
        resolved: dict[str, int] = {}
        for name, weight in traffic.items():
            key = self.latest_ready(at).name if name == LATEST else name
            resolved[key] = resolved.get(key, 0) + weight
        return {name: weight for name, weight in resolved.items() if weight}

    def add(self, app: str, now: datetime, config: AppConfig, suffix: str | None) -> Revision:
        """A template change landed: a new revision built from ``config``. Its build is the
        latest revision's when only size or scale changed (the same images run), a new
        one (of unknown quality, the default) when a container's image or settings did."""
        base = self.latest
        name = f"{app}--{suffix}" if suffix else revision_name(app, len(self.items))
        quality = (
            replace(base.quality, name=name, traffic_percent=0)
            if build_of(base.config) == build_of(config)
            else RevisionSpec(name)
        )
        revision = Revision(name, config, quality, now, now + self.ready_after)
        if not self.multiple:  # the old one serves until the new one is ready
            for older in self.items:
                if older.deactivated is None:
                    older.deactivated = revision.ready
        self.items.append(revision)
        return revision
