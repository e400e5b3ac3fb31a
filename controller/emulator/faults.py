"""Injected failures: which ones exist, and which are active at a given scenario time.

A fault is active over ``[start, end)`` of scenario time; ``end=None`` means until
cleared. ``lro-fail`` without an end is one-shot: the next long-running operation
consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .timeutil import format_datetime

FAULT_KINDS = frozenset(
    {
        "metrics-error",  # metrics routes answer 500
        "metrics-hang",  # metrics routes stall for hang_seconds (wall), then 504
        "metrics-null",  # points carry only timeStamp (empty buckets)
        "metrics-missing",  # timeseries is []
        "arm-throttle",  # Microsoft.App routes answer 429 with Retry-After: 1
        "arm-error",  # Microsoft.App routes answer 500
        "arm-slow",  # ARM answers wait delay_seconds (wall) after the request took effect
        # (with writes_only: true, writes only)
        "arm-busy",  # writes answer 409 RetryableErrorDueToAnotherOperation
        "arm-write-pressure",  # writes report few left: x-ms-ratelimit-remaining-…-writes
        "lro-fail",  # the next long-running operation ends Failed and is not applied
        "logs-error",  # Log Analytics queries answer 500
        "logs-partial",  # Log Analytics answers with a PartialError
        "identity-unavailable",  # the managed identity endpoint has no identity to give
        "concurrent-write",  # someone else changes the app just before the next PATCH
        "graph-throttle",  # Resource Graph answers 429, its user quota shown spent
        "graph-error",  # Resource Graph answers 500
        # Resource Graph's later pages shift by ``shift`` rows (default 1) as if resources
        # were created (> 0: a row repeated) or deleted (< 0: one skipped) between pages,
        # and report the moved totalRecords
        "graph-drift",
        # Resource Graph answers a result larger than a page with its first page only,
        # resultTruncated "true" and no $skipToken (as it does when it cannot page one)
        "graph-truncated",
        "arm-forbidden",  # Microsoft.App routes answer 403 AuthorizationFailed (a role removed)
        "metrics-forbidden",  # metrics routes answer 403 AuthorizationFailed
    }
)


@dataclass
class Fault:
    kind: str
    start: datetime
    end: datetime | None
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "runtime"

    def active(self, now: datetime) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": format_datetime(self.start),
            "end": format_datetime(self.end) if self.end else None,
            "params": dict(self.params),
            "source": self.source,
            "active": self.active(now),
        }


class FaultSet:
    """The faults known to one emulator (scheduled from the scenario or set at runtime)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r} (known: {sorted(FAULT_KINDS)})")
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def active(self, kind: str, now: datetime) -> Fault | None:
        """The newest active fault of ``kind``, if any."""
        for fault in reversed(self._faults):
            if fault.kind == kind and fault.active(now):
                return fault
        return None

    def consume(self, kind: str, now: datetime) -> Fault | None:
        """Like :meth:`active`, but an open-ended fault is removed once used (one-shot)."""
        fault = self.active(kind, now)
        if fault is not None and fault.end is None:
            self._faults.remove(fault)
        return fault

    def to_json(self, now: datetime) -> list[dict[str, Any]]:
        return [f.to_json(now) for f in self._faults if f.end is None or now < f.end]
