"""Circuit breakers per (target, action): stop repeating what does not help.

``closed`` → after ``failures`` consecutive failed or ineffective outcomes → ``open`` for
at least ``open_for`` → then ``half-open``: one trial is allowed. A trial that improves
closes the breaker; one that does not opens it again for another ``open_for``.
Pure functions over a frozen state, so replaying the audit rebuilds the same breakers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from controller.model import Efficacy


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class Breaker:
    """One breaker's state."""

    consecutive_bad: int = 0
    opened_at: datetime | None = None
    trial_running: bool = False  # a half-open trial was allowed and is not yet verified

    def state(self, now: datetime, open_for: timedelta) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < open_for:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN


def after_outcome(
    breaker: Breaker, efficacy: Efficacy, now: datetime, failures: int
) -> tuple[Breaker, bool]:
    """Fold one verified outcome in; return the new breaker and whether it just opened."""
    if efficacy is Efficacy.IMPROVED:
        return Breaker(), False
    bad = breaker.consecutive_bad + 1
    if breaker.opened_at is not None or bad >= failures:
        # a failed half-open trial, or the threshold reached: (re)open from now
        return Breaker(consecutive_bad=bad, opened_at=now), True
    return replace(breaker, consecutive_bad=bad, trial_running=False), False


def on_allowed(breaker: Breaker, now: datetime, open_for: timedelta) -> Breaker:
    """Mark the half-open trial as taken, so only one runs."""
    if breaker.state(now, open_for) is BreakerState.HALF_OPEN:
        return replace(breaker, trial_running=True)
    return breaker


def denies(breaker: Breaker, now: datetime, open_for: timedelta) -> str | None:
    """Why the breaker stops an action now, or None."""
    state = breaker.state(now, open_for)
    if state is BreakerState.OPEN:
        assert breaker.opened_at is not None
        until = breaker.opened_at + open_for
        return (
            f"circuit open after {breaker.consecutive_bad} failed or ineffective outcomes; "
            f"half-opens at {until:%H:%M:%S}"
        )
    if state is BreakerState.HALF_OPEN and breaker.trial_running:
        return "circuit half-open: its one trial is still being verified"
    return None
