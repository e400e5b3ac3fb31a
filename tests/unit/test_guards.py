"""Guards in order — bounds, cooldown, hourly budget, mode — each denial with its reason."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core import guards
from controller.model import ActionRecord, DecisionKind, Mode, OutcomeKind, Proposal
from tests.conftest import START, make_policy

NOW = START + timedelta(hours=2)
POLICY = make_policy()  # cooldown 5m, 4 actions an hour, bounds maxReplicas 6


def scale_out(to: int, before: int = 1, max_before: int = 10) -> Proposal:
    after = {"minReplicas": to, "maxReplicas": max(max_before, to)}
    return Proposal(
        "scaleOut", 0, after, {"minReplicas": before, "maxReplicas": max_before}, after, "breach"
    )


def ago(*minutes: float) -> list[ActionRecord]:
    return [
        ActionRecord(NOW - timedelta(minutes=m), "scaleOut", OutcomeKind.SUCCEEDED) for m in minutes
    ]


@pytest.mark.parametrize(
    ("proposal", "history", "guard", "reason"),
    [
        (scale_out(2), [], None, "guards passed"),  # nothing in the way
        (scale_out(7, before=6), [], "bounds", "exceed the bound of 6"),  # over the bound
        (scale_out(7, before=6), ago(1), "bounds", "bound"),  # bounds come before cooldown
        (scale_out(2, max_before=10), [], None, "guards passed"),  # a hand-set max is not ours
        (scale_out(2), ago(4.9), "cooldown", "cooldown is 5m"),  # inside the cooldown
        (scale_out(2), ago(5), None, "guards passed"),  # the cooldown has just ended
        (scale_out(2), ago(10, 20, 30, 40), "budget", "budget is 4"),  # 4 in the last hour
        (scale_out(2), ago(10, 20, 30, 60), None, "guards passed"),  # one is an hour old
    ],
)
def test_guards_in_order(
    proposal: Proposal, history: list[ActionRecord], guard: str | None, reason: str
) -> None:
    """Each row: which guard (if any) denies, and what it says."""
    decision = guards.check(POLICY, proposal, history, NOW, Mode.LIVE)
    assert decision.guard == guard
    assert decision.kind is (DecisionKind.ALLOW if guard is None else DecisionKind.DENY)
    assert reason in decision.reason


def test_failed_and_dry_run_actions_count_against_cooldown() -> None:
    """A failed attempt or a would-run still starts the cooldown."""
    for outcome in (OutcomeKind.FAILED, OutcomeKind.WOULD_RUN):
        history = [ActionRecord(NOW - timedelta(minutes=1), "scaleOut", outcome)]
        decision = guards.check(POLICY, scale_out(2), history, NOW, Mode.LIVE)
        assert decision.guard == "cooldown"


def test_dry_run_allows_but_says_so() -> None:
    """The mode guard marks a dry-run decision; every other guard still ran."""
    decision = guards.check(POLICY, scale_out(2), [], NOW, Mode.DRY_RUN)
    assert decision.kind is DecisionKind.ALLOW
    assert "dry-run" in decision.reason
    denied = guards.check(POLICY, scale_out(2), ago(1), NOW, Mode.DRY_RUN)
    assert denied.guard == "cooldown"


def test_cpu_bound() -> None:
    """A scale-up past the policy's CPU bound is denied."""
    policy = make_policy(
        remediation=[{"scaleUp": {"maxCpu": 1.0}}],
        guards={"bounds": {"maxCpu": 1.0}},
    )
    proposal = Proposal("scaleUp", 0, {"cpu": 1.25}, {"cpu": 1.0}, {"cpu": 1.25}, "x")
    assert guards.check(policy, proposal, [], NOW, Mode.LIVE).guard == "bounds"


def test_a_recent_change_by_anyone_starts_the_cooldown() -> None:
    """A deploy, a person, or a leader before this one changed the resource 2 minutes ago:
    with no action of our own on record, the cooldown still holds (and lapses on time)."""
    recent = guards.check(
        POLICY, scale_out(2), [], NOW, Mode.LIVE, changed_at=NOW - timedelta(minutes=2)
    )
    assert recent.guard == "cooldown"
    assert "resource was changed 2m ago" in recent.reason
    old = guards.check(
        POLICY, scale_out(2), [], NOW, Mode.LIVE, changed_at=NOW - POLICY.guards.cooldown
    )
    assert old.kind is DecisionKind.ALLOW
