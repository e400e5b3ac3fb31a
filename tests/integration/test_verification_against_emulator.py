"""Verification and breakers end to end: ineffective steps are skipped, failures open breakers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.log import check_file
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller
from tests.scenarios import app_scenario

pytestmark = pytest.mark.anyio


async def test_an_action_that_did_not_help_is_not_repeated(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """scaleOut leaves CPU at 90 %: it is judged not improved, and scaleUp comes next."""
    scenario = app_scenario(
        tmp_path,
        "hot-loop",
        ["{at: 2m, cpuDemandPerReplicaCores: 0.45}"],
        description="every replica spins; more replicas do not help, more cores do",
        workload="{cpuDemandCores: 0.0, baseMemoryMiB: 300, cpuDemandPerReplicaCores: 0.1}",
    )
    emu = Emulator(scenario, now=clock.now, wobble=0)
    policy = make_policy(guards={"cooldown": "1m", "maxActionsPerHour": 10})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=30))
    ran = [r["action"] for r in records if r["kind"] == "result"]
    judged = [(r["action"], r["efficacy"]) for r in records if r["kind"] == "verification"]
    assert ran == ["scaleOut", "scaleUp"]
    assert judged == [("scaleOut", "not-improved"), ("scaleUp", "improved")]
    app = emu.state()["resources"][policy.target.resource_id]
    assert app["cpuPercent"] < 70 and app["minReplicas"] == 2
    assert check_file(settings.audit_path).ok


async def test_three_failures_open_the_breaker_and_escalate(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Every write fails: after three failed scaleOuts the breaker opens for 30 minutes."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now, wobble=0)
    emu.clear_faults()
    emu.set_fault("lro-fail", duration_s=3 * 3600)
    policy = make_policy(guards={"cooldown": "2m", "maxActionsPerHour": 20})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=50))
    attempts = [r for r in records if r["kind"] == "result"]
    escalations = [r for r in records if r["kind"] == "escalation"]
    assert [r["outcome"] for r in attempts[:3]] == ["failed"] * 3
    assert all("breaker" in e["reason"] for e in escalations)
    opened = escalations[0]["ts"]
    assert opened >= attempts[2]["ts"]
    # while open, every proposal is denied by the breaker (or the cooldown)
    while_open = [r for r in records if opened < r["ts"] and r["kind"] == "decision"]
    assert while_open and {r["guard"] for r in while_open} <= {"breaker", "cooldown"}
    # thirty minutes after opening, exactly one half-open trial; it fails and re-opens
    [trial] = attempts[3:]
    assert _minutes(opened, trial["ts"]) >= 30
    assert len(escalations) == 2 and escalations[1]["ts"] >= trial["ts"]
    assert emu.state()["resources"][policy.target.resource_id]["minReplicas"] == 1


def _minutes(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 60


async def test_busy_is_not_broken(tmp_path: Path, clock: VirtualClock) -> None:
    """409 "another operation in progress" is retried and never opens a breaker; once the
    other operation ends, the action runs."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now, wobble=0)
    emu.clear_faults()
    emu.set_fault("arm-busy", duration_s=12 * 60)
    policy = make_policy(
        guards={"cooldown": "1m", "maxActionsPerHour": 30, "breaker": {"failures": 1}}
    )
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=20))
    results = [r for r in records if r["kind"] == "result"]
    assert [r["outcome"] for r in results][-1] == "succeeded"
    assert any(r["outcome"] == "failed" for r in results)
    assert not any(r["kind"] == "escalation" for r in records)
    patches = [r for r in emu.requests if r["method"] == "PATCH"]
    assert len(patches) > len(results)  # each busy answer was retried within its pass
    assert emu.state()["resources"][policy.target.resource_id]["minReplicas"] >= 2


async def test_an_update_that_never_finishes_is_failed_at_the_deadline(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A long-running operation that stays InProgress is abandoned at the action deadline,
    recorded as failed, and the app is left as it was: nothing is re-sent blindly."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now, wobble=0, lro_polls=10**9)
    emu.clear_faults()
    policy = make_policy(guards={"cooldown": "30m", "maxActionsPerHour": 10})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live", actionDeadline="300ms")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=12))
    [result] = [r for r in records if r["kind"] == "result"]
    assert result["outcome"] == "failed"
    assert emu.writes == 1
    assert emu.state()["resources"][policy.target.resource_id]["minReplicas"] == 1


async def test_writes_wait_when_arm_says_the_write_budget_is_nearly_spent(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """After ARM answers a write with only 2 writes left, further actions wait (guard
    `fleet`) instead of running into throttling."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now, wobble=0)
    emu.clear_faults()
    emu.set_fault("arm-write-pressure", remaining=2)
    policy = make_policy(guards={"cooldown": "1m", "maxActionsPerHour": 30})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=25))
    first = next(i for i, r in enumerate(records) if r["kind"] == "result")
    assert records[first]["outcome"] == "succeeded"
    # the next proposal past its cooldown meets ARM's own low reading (held ~2 s of wall time,
    # many passes of virtual time)
    after = [
        r for r in records[first + 1 :] if r["decision"] == "deny" and r["guard"] != "cooldown"
    ]
    assert after and after[0]["guard"] == "fleet" and "2 writes left" in after[0]["reason"]
