"""Whether a replayed series understates demand: a utilisation recorded at its ceiling.

A CPU recorded at 100 % says only that demand was *at least* the capacity; the effect
model scales what was recorded, so a replay of a saturated series may show one
scale-out fixing what took two. The report cannot know the true demand, but it can say
when the values it replayed were pinned at a ceiling while the objective was past its
threshold: 100 for a percentage, or, for any other measure, the series' recorded
maximum held for :data:`RUN` samples in a row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from controller.backtest.model import TimedValue
from controller.core.evaluate import holds

RUN = 3  # samples in a row at the series' maximum: a flat top, not a peak
PERCENT = 100.0
# measures that are percentages though their name does not say so
_PERCENT_NAMES = ("percent", "normalizedruconsumption", "serverload")


def is_percentage(measures: str) -> bool:
    """What the signal measures is a percentage, with 100 as its ceiling."""
    name = measures.casefold()
    return any(hint in name for hint in _PERCENT_NAMES)


def saturation(
    measures: str,
    comparison: str,
    threshold: float,
    points: Sequence[TimedValue],
    exceeded: Sequence[tuple[datetime, datetime]],
) -> str | None:
    """Why ``points`` may understate demand while past ``threshold``, or None.

    Only an upper limit (``<``, ``<=``) can be understated by a ceiling."""
    if comparison not in ("<", "<=") or not exceeded:
        return None
    known = [(ts, v) for ts, v in points if v is not None]
    inside = [v for ts, v in known if any(a <= ts < b for a, b in exceeded)]
    if not inside:
        return None
    if is_percentage(measures):
        pinned = sum(1 for v in inside if v >= PERCENT - 1e-9)
        if pinned:
            return (
                f"{measures} read 100 % {pinned} time(s) while in breach: demand was at "
                "least the capacity, maybe more, so a replay may show fewer actions "
                "than were needed"
            )
        return None
    top = max(v for _, v in known)
    if holds(comparison, top, threshold):
        return None
    longest = run = 0
    for ts, value in known:
        within = any(a <= ts < b for a, b in exceeded)
        run = run + 1 if within and math.isclose(value, top, rel_tol=1e-9) else 0
        longest = max(longest, run)
    if longest >= RUN:
        return (
            f"{measures} held its recorded maximum {top:g} for {longest} samples in a row "
            "while in breach: it may be capped there, so a replay may show fewer "
            "actions than were needed"
        )
    return None
