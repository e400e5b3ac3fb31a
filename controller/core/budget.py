"""Budgets shared across targets: a token bucket per subscription, a global hourly cap.

Pure arithmetic over plain values, so the live fleet and a replay of the audit log
compute the same remaining budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``per_hour`` tokens an hour."""

    capacity: float
    per_hour: float
    tokens: float
    at: datetime | None = None

    def refilled(self, now: datetime) -> Bucket:
        if self.at is None:
            return replace(self, at=now)
        gained = (now - self.at) / HOUR * self.per_hour
        return replace(self, tokens=min(self.capacity, self.tokens + gained), at=now)

    def take(self, now: datetime) -> Bucket:
        bucket = self.refilled(now)
        return replace(bucket, tokens=bucket.tokens - 1)

    def available(self, now: datetime) -> bool:
        return self.refilled(now).tokens >= 1


def window_count(times: Sequence[datetime], now: datetime, window: timedelta) -> int:
    return sum(1 for t in times if now - t < window)
