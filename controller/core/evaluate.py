"""Objective evaluation: samples over a sustained window → a verdict.

Rules, in the order they apply:

1. A failed backend, no samples, or a newest sample older than the objective's
   staleness (three grains by default) is ``unknown`` — never a breach.
2. Once in breach, the objective stays in breach while the newest value violates the
   threshold, is ``recovering`` between the threshold and the clearing line, and is
   ``ok`` only past the clearing line (hysteresis).
3. Otherwise a breach needs every bucket of the ``for`` window present and violating;
   a gap (an empty bucket) means the breach is not proven. A violating newest value
   short of that is ``pending``: shown, never acted on.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from datetime import datetime

from controller.model import Observation, Quality, Sample, Verdict, VerdictState
from controller.policy.schema import Objective

HOLDS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def holds(comparison: str, value: float, line: float) -> bool:
    """Whether ``value`` meets an objective written ``value <comparison> line``."""
    return HOLDS[comparison](value, line)


def evaluate(
    objective: Objective,
    observation: Observation,
    now: datetime,
    previous: VerdictState | None = None,
) -> Verdict:
    """Judge one objective; ``previous`` is its last known (non-unknown) state."""

    worst_value: float | None = None

    def verdict(state: VerdictState, value: float | None, reason: str) -> Verdict:
        return Verdict(objective.name, state, value, objective.threshold, reason, worst_value)

    if observation.quality is Quality.ERROR:
        error = observation.error or "no answer"
        return Verdict(
            objective.name,
            VerdictState.UNKNOWN,
            None,
            objective.threshold,
            f"signal failed: {error}",
            error=error,
        )
    valued = sorted((s for s in observation.samples if s.value is not None), key=_ts)
    if not valued:
        return verdict(VerdictState.UNKNOWN, None, "no data points in the window")
    latest = valued[-1]
    assert latest.value is not None
    values = [s.value for s in valued if s.value is not None]
    worst_value = max(values) if objective.comparison in ("<", "<=") else min(values)
    grain = objective.signal.grain
    age = now - (latest.ts + grain)
    if age > objective.staleness:
        return verdict(
            VerdictState.UNKNOWN,
            latest.value,
            f"stale: newest point is {int(age.total_seconds())}s old "
            f"(limit {int(objective.staleness.total_seconds())}s)",
        )

    value = latest.value
    cmp = objective.comparison
    line = f"{value:.4g} vs objective {cmp} {objective.threshold:g}"
    violating = not holds(cmp, value, objective.threshold)

    if previous in (VerdictState.BREACH, VerdictState.RECOVERING):
        if violating:
            return verdict(VerdictState.BREACH, value, f"still in breach: {line}")
        if not holds(cmp, value, objective.clear_line):
            return verdict(
                VerdictState.RECOVERING,
                value,
                f"recovering: {line}, clears at {cmp} {objective.clear_line:g}",
            )
        return verdict(VerdictState.OK, value, f"cleared: {line}")

    if not violating:
        return verdict(VerdictState.OK, value, f"ok: {line}")
    buckets = math.ceil(objective.for_ / grain)
    by_ts = {s.ts: s.value for s in valued}
    window = [by_ts.get(latest.ts - grain * k) for k in range(buckets)]
    bad = sum(1 for v in window if v is not None and not holds(cmp, v, objective.threshold))
    if bad == buckets:
        return verdict(
            VerdictState.BREACH,
            value,
            f"breach: {line} sustained over {buckets} × {int(grain.total_seconds())}s",
        )
    return verdict(
        VerdictState.PENDING,
        value,
        f"pending: {line}, violating in {bad} of {buckets} buckets of the window",
    )


def _ts(sample: Sample) -> datetime:
    return sample.ts
