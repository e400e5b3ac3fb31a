"""Every Prometheus metric in one place, and the structlog set-up.

Metrics live on a registry owned by each run (not the process-global default), so
tests and the in-process demo never share counters.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from controller.core.guards import GUARDS
from controller.model import DecisionKind, Efficacy, OutcomeKind, Quality, VerdictState
from controller.policy.schema import Policy

# label values a policy implies, beyond its own objectives and actions
ESCALATIONS = ("fail-static", "breaker-open", "needs-human", "approval")  # reasons
DENIED_BY = (*GUARDS, "ttl", "approval")  # the guards', then the reconciler's own
PASS_RESULTS = ("ok", "error")
RELOAD_RESULTS = ("applied", "rejected")

_STATE_VALUE = {
    VerdictState.OK: 0,
    VerdictState.PENDING: 1,
    VerdictState.RECOVERING: 2,
    VerdictState.BREACH: 3,
    VerdictState.UNKNOWN: -1,
}


class TargetGauge(Collector):
    """A labelled gauge with a series a target, each series one entry of a dict.

    prometheus_client keeps a label set as a child metric with its own lock and value
    (~600 B); these gauges have one a target (~20 MiB at 10,000 targets for four of
    them). Set and scraped on the event loop's thread; the exposition is the same."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def set(self, value: float, *labels: str) -> None:
        self._values[labels] = float(value)

    def remove(self, *labels: str) -> None:
        self._values.pop(labels, None)

    def label_sets(self) -> list[tuple[str, ...]]:
        return list(self._values)

    def has(self, *labels: str) -> bool:
        return labels in self._values

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, value in list(self._values.items()):
            family.add_metric(labels, value)
        yield family


class Metrics:
    """The controller's metrics, prefixed ``remediator_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "remediator_reconcile_passes",
            "Reconcile passes by result.",
            ["policy", "result"],
            registry=r,
        )
        # not by policy: 17 values a target (170,000 series at 10,000 targets) for what
        # loop_lag_seconds{policy} and reconcile_passes_total{policy} already say per target
        self.reconcile_seconds = Histogram(
            "remediator_reconcile_duration_seconds",
            "Duration of one reconcile pass, every target's.",
            registry=r,
        )
        self.observations = Counter(
            "remediator_observations",
            "Observations by source and quality.",
            ["source", "quality"],
            registry=r,
        )
        self.verdicts = TargetGauge(
            "remediator_objective_state",
            "Objective state: 0 ok, 1 pending, 2 recovering, 3 breach, -1 unknown.",
            ["policy", "objective"],
            r,
        )
        self.decisions = Counter(
            "remediator_decisions",
            "Decisions by policy, action, kind and denying guard.",
            ["policy", "action", "decision", "guard"],
            registry=r,
        )
        self.actions = Counter(
            "remediator_actions",
            "Actions by policy, action and outcome.",
            ["policy", "action", "outcome"],
            registry=r,
        )
        self.efficacy = Counter(
            "remediator_action_efficacy",
            "Actions judged after they settled, by policy, action and efficacy.",
            ["policy", "action", "efficacy"],
            registry=r,
        )
        self.escalations = Counter(
            "remediator_escalations",
            "Escalations to a human, by reason.",
            ["policy", "reason"],
            registry=r,
        )
        self.leader = Gauge(
            "remediator_leader",
            "1 while this replica may act: it holds the leader lease, or runs alone.",
            registry=r,
        )
        self.partitions_owned = Gauge(
            "remediator_partitions_owned",
            "Shards: the partitions this replica owns and acts for now (0 with shards off).",
            registry=r,
        )
        self.partitions_waiting = Gauge(
            "remediator_partitions_waiting",
            "Shards: partitions this replica owns but does not run yet: their audit log is "
            "still held by another writer (an old owner finishing), or cannot be opened.",
            registry=r,
        )
        self.partitions_refused = Gauge(
            "remediator_partitions_refused",
            "Shards: partitions this replica owns whose audit log (or the log it imports) "
            "is not trusted: their targets do not run until an operator acts.",
            registry=r,
        )
        self.last_pass = Gauge(
            "remediator_last_pass_timestamp_seconds",
            "When the loop last finished a pass.",
            registry=r,
        )
        self.loop_lag = TargetGauge(
            "remediator_loop_lag_seconds",
            "How late the last pass of a target started after it was due.",
            ["policy"],
            r,
        )
        self.verdict_total = Counter(
            "remediator_verdicts",
            "Objective verdicts, by state.",
            ["policy", "objective", "state"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "remediator_breaker_state",
            "Circuit breaker per target and action: 0 closed, 1 half-open, 2 open.",
            ["policy", "action"],
            registry=r,
        )
        self.budget_remaining = TargetGauge(
            "remediator_budget_remaining",
            "Actions still allowed now: per target this hour (scope=target), per "
            "subscription token bucket (scope=subscription), across all targets this hour "
            "(scope=global).",
            ["scope", "name"],
            r,
        )
        self.paused = TargetGauge(
            "remediator_paused",
            "1 while the kill switch holds actions, as the last decision of a target saw it.",
            ["policy"],
            r,
        )
        self.azure_requests = Counter(
            "remediator_azure_requests",
            "Azure calls by operation (the RBAC action it needs) and HTTP status.",
            ["operation", "status"],
            registry=r,
        )
        self.arm_writes_remaining = Gauge(
            "remediator_arm_writes_remaining",
            "ARM's remaining subscription writes (x-ms-ratelimit-remaining-subscription-writes).",
            registry=r,
        )
        self.audit_write_seconds = Histogram(
            "remediator_audit_write_duration_seconds",
            "Time to write and fsync one audit line.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.audit_failures = Counter(
            "remediator_audit_write_failures",
            "Audit lines that could not be written; the action they guarded did not run.",
            registry=r,
        )
        self.policies_loaded = Gauge(
            "remediator_policies_loaded", "Policies in the running set.", registry=r
        )
        self.policy_reloads = Counter(
            "remediator_policy_reloads",
            "Policy reloads, by result (a rejected set leaves the last good one running).",
            ["result"],
            registry=r,
        )
        self.targets = Gauge(
            "remediator_targets",
            "Targets each policy runs: 1 for a policy naming a resource, what its selector "
            "found for the others; with shards, those of this replica's partitions.",
            ["policy"],
            registry=r,
        )
        self.target_conflicts = Gauge(
            "remediator_target_conflicts",
            "Resources two policies claim: refused for both, never acted on twice.",
            registry=r,
        )
        self.discovery_seconds = Histogram(
            "remediator_discovery_duration_seconds",
            "Time a selector's Resource Graph query took, all pages.",
            ["policy"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.discovery_errors = Counter(
            "remediator_discovery_errors",
            "Selector queries not believed (failed, empty where there were targets, or too "
            "broad): the last good set keeps running.",
            ["policy"],
            registry=r,
        )
        self.discovery_stale = Gauge(
            "remediator_discovery_stale",
            "1 while a selector runs on its last good set because the newest answer was "
            "not believed.",
            ["policy"],
            registry=r,
        )
        self._prepared: dict[str, Policy] = {}  # the policy each name's series were made for
        self.build = Info("remediator_build", "Build information.", registry=r)
        self.build.info({"version": _version()})
        for result in RELOAD_RESULTS:
            self.policy_reloads.labels(result)

    def verdict_state(self, policy: str, objective: str, state: VerdictState) -> None:
        self.verdicts.set(_STATE_VALUE[state], policy, objective)
        self.verdict_total.labels(policy, objective, state.value).inc()

    def prepare(self, policies: Iterable[Policy]) -> None:
        """Create every series these policies imply that does not exist yet: counters at
        0, gauges at what is known before a pass (state unknown, breakers closed, not
        paused). An alert on ``increase()`` sees a first event only in a series that
        was scraped before it; and a gauge of an objective or action a changed policy
        no longer has is removed, so no stale value keeps an alert firing."""
        for policy in policies:
            name = policy.name
            if self._prepared.get(name) is policy:
                continue  # unchanged since its series were made (a discovery, a reshard)
            self._prepared[name] = policy
            objectives = [o.name for o in policy.objectives]
            actions = sorted({s.action for s in policy.remediation} | set(policy.step_back_actions))
            for result in PASS_RESULTS:
                self.reconciles.labels(name, result)
            for reason in ESCALATIONS:
                self.escalations.labels(name, reason)
            for objective in policy.objectives:
                for quality in Quality:
                    self.observations.labels(objective.signal.type, quality.value)
                for state in VerdictState:
                    self.verdict_total.labels(name, objective.name, state.value)
                _initial(self.verdicts, (name, objective.name), _STATE_VALUE[VerdictState.UNKNOWN])
            for action in actions:
                for outcome in OutcomeKind:
                    self.actions.labels(name, action, outcome.value)
                for efficacy in Efficacy:
                    self.efficacy.labels(name, action, efficacy.value)
                self.decisions.labels(name, action, DecisionKind.ALLOW.value, "")
                self.decisions.labels(name, action, DecisionKind.PENDING_APPROVAL.value, "approval")
                for guard in DENIED_BY:
                    self.decisions.labels(name, action, DecisionKind.DENY.value, guard)
                _initial(self.breaker_state, (name, action), 0)
            _prune(self.verdicts, name, objectives)
            _prune(self.breaker_state, name, actions)
            _initial(self.paused, (name,), 0)
            _initial(self.loop_lag, (name,), 0)
            _initial(self.budget_remaining, ("target", name), policy.guards.max_actions_per_hour)
            if policy.target.selector is not None:
                self.discovery_seconds.labels(name)
                self.discovery_errors.labels(name)
                _initial(self.discovery_stale, (name,), 0)

    def forget(self, policy: str) -> None:
        """Drop every series of a removed policy, so no gauge of it keeps an alert firing
        and no counter of it lingers."""
        self._prepared.pop(policy, None)
        for metric in self._per_policy():
            where = metric._labelnames.index("policy")
            for labels in list(metric._metrics):
                if labels[where] == policy:
                    metric.remove(*labels)
        for gauge in (self.verdicts, self.paused, self.loop_lag):
            for labels in gauge.label_sets():
                if labels[0] == policy:
                    gauge.remove(*labels)
        self.budget_remaining.remove("target", policy)

    def _per_policy(self) -> list[MetricWrapperBase]:
        return [
            m
            for m in vars(self).values()
            if isinstance(m, MetricWrapperBase) and "policy" in m._labelnames
        ]

    def audit_write(self, seconds: float | None) -> None:
        """One audit write: its duration, or None when it failed."""
        if seconds is None:
            self.audit_failures.inc()
        else:
            self.audit_write_seconds.observe(seconds)


def _initial(metric: Gauge | TargetGauge, labels: tuple[str, ...], value: float) -> None:
    """Create a gauge's series at ``value``, unless it exists: a real value is kept."""
    if isinstance(metric, TargetGauge):
        if not metric.has(*labels):
            metric.set(value, *labels)
    elif labels not in metric._metrics:
        metric.labels(*labels).set(value)


def _prune(metric: Gauge | TargetGauge, policy: str, keep: Iterable[str]) -> None:
    """Remove a policy's series of a gauge labelled (policy, x) whose x it no longer has."""
    wanted = set(keep)
    found = metric.label_sets() if isinstance(metric, TargetGauge) else list(metric._metrics)
    for labels in found:
        if labels[0] == policy and labels[1] not in wanted:
            metric.remove(*labels)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("remediator")
    except PackageNotFoundError:
        return "unknown"


def configure_logging(level: str = "info", json: bool = False) -> None:
    """One processor chain for every log line, written to stderr."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        # Resolve stderr per logger, not once: it may be replaced after set-up (tests, daemons).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
