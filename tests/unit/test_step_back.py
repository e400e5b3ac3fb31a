"""``when_due_changes``: a replay asks ``when_due`` again only when its answer may have
changed, so that instant must never be late."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.step_back import when_due, when_due_changes
from controller.model import ActionRecord, OutcomeKind, Verdict, VerdictState
from tests.conftest import START, make_policy

HEALTHY = (Verdict("cpu", VerdictState.OK, 30.0, 70.0, "ok"),)
minutes = st.integers(0, 180).map(lambda m: START + timedelta(minutes=m))


@settings(max_examples=200)
@given(
    stable=st.integers(1, 60),
    cooldown=st.integers(1, 60),
    ok_since=st.one_of(st.none(), minutes),
    actions=st.lists(minutes, max_size=3),
    now=minutes,
    later=st.integers(0, 240),
)
def test_the_answer_holds_until_the_change(
    stable: int,
    cooldown: int,
    ok_since: datetime | None,
    actions: list[datetime],
    now: datetime,
    later: int,
) -> None:
    policy = make_policy(
        stepBack={
            "baseline": {"minReplicas": 1},
            "stableFor": f"{stable}m",
            "cooldown": f"{cooldown}m",
        }
    )
    history = [ActionRecord(ts, "scaleOut", OutcomeKind.SUCCEEDED) for ts in actions]
    change = when_due_changes(policy, ok_since, history, now)
    then = now + timedelta(minutes=later)
    if change is None or then < change:
        answer = when_due(policy, HEALTHY, ok_since, history, now)
        assert when_due(policy, HEALTHY, ok_since, history, then) == answer


def test_without_a_step_back_rule_nothing_changes() -> None:
    assert when_due_changes(make_policy(), START, [], START) is None


def test_the_change_is_the_end_of_the_stable_period_then_of_the_cooldown() -> None:
    policy = make_policy(
        stepBack={"baseline": {"minReplicas": 1}, "stableFor": "30m", "cooldown": "45m"}
    )
    acted = [ActionRecord(START, "scaleOut", OutcomeKind.SUCCEEDED)]
    healthy_at = START + timedelta(minutes=5)
    assert when_due_changes(policy, healthy_at, acted, healthy_at) == START + timedelta(minutes=35)
    later = START + timedelta(minutes=36)
    assert when_due_changes(policy, healthy_at, acted, later) == START + timedelta(minutes=45)
    assert when_due_changes(policy, healthy_at, acted, START + timedelta(minutes=50)) is None
