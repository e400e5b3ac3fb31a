"""Each runbook scenario end to end through the command line: live, the expected action
meets the objective; dry-run, the same first decision and nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from controller.cli import main

Check = Callable[[dict[str, Any]], bool]

# scenario → (the action that fixes it, the resource, how its end state shows it fixed)
SCENARIOS: dict[str, tuple[str, str, Check]] = {
    "cosmos-throttling": (
        "raiseThroughput",
        "agentstudio-db",
        lambda end: end["throttledPercent"] < 1 and end["throughput"] > 4000,
    ),
    "bad-deploy": (
        "rollbackRevision",
        "agentstudio-api",
        lambda end: end["traffic"] == {"agentstudio-api--r1": 100} and end["errorRatePercent"] < 1,
    ),
    "redis-overload": (
        "scaleCache",
        "redis-agentstudio-prod",
        lambda end: end["sku"]["capacity"] == 2 and end["serverLoad"] < 70,
    ),
    "hung-agent": (
        "restartRevision",
        "agentstudio-agents",
        lambda end: end["healthy"] and end["restarts"] == 1,
    ),
}


def demo(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["demo", "--instant", *args]) == 0
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_live_the_expected_action_meets_the_objective(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    action, resource, fixed = SCENARIOS[scenario]
    summary = demo(capsys, "--scenario", scenario)
    assert summary["actions"].get(action, 0) >= 1, summary
    assert summary["firstDecision"]["action"] == action
    assert summary["writes"] >= 1
    assert fixed(summary["final"][resource]), summary["final"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_dry_run_shows_the_same_decision_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    action, resource, fixed = SCENARIOS[scenario]
    live = demo(capsys, "--scenario", scenario)
    dry = demo(capsys, "--scenario", scenario, "--dry-run")
    assert dry["writes"] == 0 and dry["actions"] == {}
    assert dry["firstDecision"] == {**live["firstDecision"], "outcome": "would-run"}
    assert dry["wouldRun"].get(action, 0) >= 1
    assert not fixed(dry["final"][resource])  # nothing changed, so nothing is fixed
