"""Every Prometheus metric in one place, and the structlog set-up.

Metrics live on a registry owned by each run (not the process-global default), so
tests and the in-process demo never share counters.
"""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from controller.model import VerdictState

_STATE_VALUE = {
    VerdictState.OK: 0,
    VerdictState.PENDING: 1,
    VerdictState.RECOVERING: 2,
    VerdictState.BREACH: 3,
    VerdictState.UNKNOWN: -1,
}


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
        self.reconcile_seconds = Histogram(
            "remediator_reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            ["policy"],
            registry=r,
        )
        self.observations = Counter(
            "remediator_observations",
            "Observations by source and quality.",
            ["source", "quality"],
            registry=r,
        )
        self.verdicts = Gauge(
            "remediator_objective_state",
            "Objective state: 0 ok, 1 pending, 2 recovering, 3 breach, -1 unknown.",
            ["policy", "objective"],
            registry=r,
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
            "remediator_leader", "1 while this replica holds the leader lease.", registry=r
        )
        self.last_pass = Gauge(
            "remediator_last_pass_timestamp_seconds",
            "When the loop last finished a pass.",
            registry=r,
        )
        self.build = Info("remediator_build", "Build information.", registry=r)
        self.build.info({"version": _version()})

    def verdict_state(self, policy: str, objective: str, state: VerdictState) -> None:
        self.verdicts.labels(policy, objective).set(_STATE_VALUE[state])


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
