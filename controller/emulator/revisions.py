"""Revisions of an emulated Container App: how good each is, and who gets traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RevisionSpec:
    """One revision as the scenario declares it."""

    name: str
    error_rate_percent: float = 0.1  # requests it fails
    p95_ms: float = 250.0  # its 95th-percentile duration when not overloaded
    traffic_percent: int = 0  # its share of ingress traffic at the start
    age: timedelta = timedelta(days=1)  # how long before the scenario's start it was created


@dataclass(frozen=True)
class RequestSample:
    """What Application Insights would have logged for one app in one minute."""

    requests: float
    failed: float
    p95_ms: float
    p99_ms: float
    dependency_failure_percent: float
    exceptions: float
