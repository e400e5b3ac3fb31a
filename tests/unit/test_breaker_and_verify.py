"""Breakers open after repeated bad outcomes; actions are judged on what changed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.breaker import Breaker, BreakerState, after_outcome, denies, on_allowed
from controller.core.verify import judge
from controller.model import Efficacy, OutcomeKind, Verdict, VerdictState
from tests.conftest import START, make_policy

OPEN_FOR = timedelta(minutes=30)
BAD, GOOD = Efficacy.NOT_IMPROVED, Efficacy.IMPROVED


def fold(*outcomes: Efficacy, failures: int = 3) -> tuple[Breaker, list[bool]]:
    breaker, opened = Breaker(), []
    for i, efficacy in enumerate(outcomes):
        breaker, just_opened = after_outcome(
            breaker, efficacy, START + timedelta(minutes=i), failures
        )
        opened.append(just_opened)
    return breaker, opened


@pytest.mark.parametrize(
    ("outcomes", "state", "opened_at_step"),
    [
        ((BAD, BAD), BreakerState.CLOSED, None),  # two bad outcomes are not yet three
        ((BAD, BAD, BAD), BreakerState.OPEN, 2),  # the third opens it
        ((Efficacy.FAILED, BAD, Efficacy.FAILED), BreakerState.OPEN, 2),  # failures count too
        ((BAD, BAD, GOOD, BAD, BAD), BreakerState.CLOSED, None),  # success resets the count
    ],
)
def test_breaker_opens_after_three_consecutive_bad_outcomes(
    outcomes: tuple[Efficacy, ...], state: BreakerState, opened_at_step: int | None
) -> None:
    """Each row: the state after the outcomes, and which outcome opened it."""
    breaker, opened = fold(*outcomes)
    assert breaker.state(START + timedelta(minutes=10), OPEN_FOR) is state
    assert (opened.index(True) if True in opened else None) == opened_at_step


def test_open_half_open_and_one_trial() -> None:
    """Open for 30 min; then one trial; a bad trial reopens, a good one closes."""
    breaker, _ = fold(BAD, BAD, BAD)  # opened at START + 2 min
    assert denies(breaker, START + timedelta(minutes=31), OPEN_FOR) is not None
    half = START + timedelta(minutes=33)
    assert breaker.state(half, OPEN_FOR) is BreakerState.HALF_OPEN
    assert denies(breaker, half, OPEN_FOR) is None
    trial = on_allowed(breaker, half, OPEN_FOR)
    assert "half-open" in (denies(trial, half, OPEN_FOR) or "")
    reopened, just = after_outcome(trial, BAD, half + timedelta(minutes=5), 3)
    assert just and reopened.state(half + timedelta(minutes=6), OPEN_FOR) is BreakerState.OPEN
    closed, _ = after_outcome(trial, GOOD, half + timedelta(minutes=5), 3)
    assert closed == Breaker()


POLICY = make_policy()  # cpu < 70


def now(value: float | None, state: VerdictState = VerdictState.BREACH) -> list[Verdict]:
    return [Verdict("cpu", state, value, 70.0, "")]


@pytest.mark.parametrize(
    ("before", "after", "state", "outcome", "expected"),
    [
        (100.0, 80.0, VerdictState.BREACH, OutcomeKind.SUCCEEDED, Efficacy.IMPROVED),  # 20 of 30
        (100.0, 98.0, VerdictState.BREACH, OutcomeKind.SUCCEEDED, Efficacy.NOT_IMPROVED),  # 2 < 3
        (100.0, 97.0, VerdictState.BREACH, OutcomeKind.SUCCEEDED, Efficacy.IMPROVED),  # 10 % of gap
        (75.0, 65.0, VerdictState.RECOVERING, OutcomeKind.SUCCEEDED, Efficacy.IMPROVED),  # holds
        (80.0, 95.0, VerdictState.BREACH, OutcomeKind.SUCCEEDED, Efficacy.NOT_IMPROVED),  # worse
        (100.0, None, VerdictState.UNKNOWN, OutcomeKind.SUCCEEDED, None),  # cannot tell yet
        (100.0, 50.0, VerdictState.OK, OutcomeKind.FAILED, Efficacy.FAILED),  # it never ran
    ],
)
def test_judging_an_action(
    before: float,
    after: float | None,
    state: VerdictState,
    outcome: OutcomeKind,
    expected: Efficacy | None,
) -> None:
    """Improved means the objective holds or the value closed 10 % of its gap."""
    assert judge(POLICY.objectives, {"cpu": before}, now(after, state), outcome) is expected
