"""Every Prometheus metric in one place, and the structlog set-up.

Metrics live on a registry owned by each run (not the process-global default), so
tests and the in-process demo never share counters.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.model import VerdictState

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
            "Decisions by action, kind and denying guard.",
            ["action", "decision", "guard"],
            registry=r,
        )
        self.actions = Counter(
            "remediator_actions",
            "Actions by outcome.",
            ["action", "outcome"],
            registry=r,
        )
        self.efficacy = Counter(
            "remediator_action_efficacy",
            "Actions judged after they settled, by efficacy.",
            ["action", "efficacy"],
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
            "found for the others.",
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
        self.build = Info("remediator_build", "Build information.", registry=r)
        self.build.info({"version": _version()})

    def verdict_state(self, policy: str, objective: str, state: VerdictState) -> None:
        self.verdicts.set(_STATE_VALUE[state], policy, objective)
        self.verdict_total.labels(policy, objective, state.value).inc()

    def forget(self, policy: str) -> None:
        """Drop a removed policy's series, so no gauge of it keeps an alert firing."""
        for gauge in (self.verdicts, self.paused, self.loop_lag):
            for labels in gauge.label_sets():
                if policy in labels[:1]:
                    gauge.remove(*labels)
        for metric in (self.breaker_state, self.targets, self.discovery_stale):
            for series in list(metric._metrics):
                if policy in series[:1]:
                    metric.remove(*series)
        self.budget_remaining.remove("target", policy)

    def audit_write(self, seconds: float | None) -> None:
        """One audit write: its duration, or None when it failed."""
        if seconds is None:
            self.audit_failures.inc()
        else:
            self.audit_write_seconds.observe(seconds)


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
