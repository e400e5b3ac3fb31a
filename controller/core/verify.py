"""Judging an action after it had time to settle: improved, not improved, or failed.

An action is judged on the objectives that were in breach when it was decided. It
*improved* things if any of them now holds, or moved toward its threshold by at least
``margin`` of the gap it had to close; a value that barely moved is not improvement.
If the data is unknown the judgement waits (``None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.core.evaluate import holds
from controller.model import Efficacy, OutcomeKind, Verdict, VerdictState
from controller.policy.schema import Objective

DEFAULT_MARGIN = 0.1


def judge(
    objectives: Sequence[Objective],
    baseline: Mapping[str, float],
    now: Sequence[Verdict],
    outcome: OutcomeKind,
    margin: float = DEFAULT_MARGIN,
) -> Efficacy | None:
    """The action's efficacy, or None while the data cannot tell."""
    if outcome is OutcomeKind.FAILED:
        return Efficacy.FAILED
    by_name = {o.name: o for o in objectives}
    current = {v.objective: v for v in now}
    undecided = False
    for name, before in baseline.items():
        objective, verdict = by_name.get(name), current.get(name)
        if objective is None or verdict is None:
            continue
        if verdict.state is VerdictState.UNKNOWN or verdict.value is None:
            undecided = True
            continue
        value = verdict.value
        if holds(objective.comparison, value, objective.threshold):
            return Efficacy.IMPROVED
        gap = abs(before - objective.threshold)
        toward = before - value if objective.comparison in ("<", "<=") else value - before
        if gap > 0 and toward >= margin * gap:
            return Efficacy.IMPROVED
    return None if undecided else Efficacy.NOT_IMPROVED
