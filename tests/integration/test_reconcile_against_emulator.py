"""The whole pass — signals, verdicts, guards, actions, audit — against the emulator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import actions, run_controller
from tests.scenarios import app_scenario

pytestmark = pytest.mark.anyio


async def test_two_breaches_inside_one_cooldown_cause_one_action(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A second breach that starts while the first action's cooldown runs is denied."""
    scenario = app_scenario(
        tmp_path,
        "two-spikes",
        [
            "{at: 2m, cpuDemandCores: 0.8}",
            "{at: 8m, cpuDemandCores: 0.2}",
            "{at: 12m, cpuDemandCores: 1.6}",
        ],
    )
    emu = Emulator(scenario, now=clock.now, wobble=0)
    policy = make_policy(guards={"cooldown": "20m", "maxActionsPerHour": 10})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=22))
    states = [r["verdict"] for r in records]
    first_breach = states.index("breach")
    assert "ok" in states[first_breach:], "the first breach cleared before the second"
    assert [r["action"] for r in actions(records)] == ["scaleOut"]
    later = [r for r in records if r["decision"] == "deny"]
    assert later and all(r["guard"] == "cooldown" for r in later)
    assert emu.writes == 1


async def test_dry_run_decides_the_same_but_writes_nothing(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """In dry-run the first decision is the same scaleOut, recorded as would-run."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path)  # dry-run is the default
    records = await run_controller(settings, [make_policy()], clock, START + timedelta(minutes=12))
    [first, *_] = [r for r in records if r["decision"] == "allow"]
    assert first["action"] == "scaleOut" and first["outcome"] == "would-run"
    assert first["mode"] == "dry-run" and first["params"]["minReplicas"] == 2
    assert emu.writes == 0


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("metrics-error", {}),
        ("metrics-hang", {"hang_seconds": 5}),
        ("metrics-null", {}),
        ("metrics-missing", {}),
    ],
)
async def test_failing_metrics_cause_no_action_and_the_loop_recovers(
    tmp_path: Path, clock: VirtualClock, fault: str, params: dict[str, float]
) -> None:
    """While metrics answer 500, nothing, or empty data: no action, no crash. Once they
    return, the same running loop remediates."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now)
    emu.clear_faults()
    fault_ends = START + timedelta(minutes=8)  # covers the spike's onset at 4 min
    emu.set_fault(fault, duration_s=8 * 60, **params)
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live", requestTimeout="100ms")
        records = await run_controller(
            settings, [make_policy()], clock, START + timedelta(minutes=16)
        )
    during = [r for r in records if r["ts"] < fault_ends.isoformat().replace("+00:00", "Z")]
    after = [r for r in records if r not in during]
    assert during and {r["verdict"] for r in during} <= {"ok", "unknown"}
    assert any(r["verdict"] == "unknown" for r in during)
    assert not any(r["kind"] in ("intent", "result") for r in during)
    assert [r["action"] for r in actions(after)][:1] == ["scaleOut"]
    assert emu.writes >= 1


async def test_audit_lines_carry_the_contract_fields(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Every decision line has ts, policy, target, verdict, action, params, decision, reason,
    mode, outcome, before and after."""
    _, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    records = await run_controller(settings, [make_policy()], clock, START + timedelta(minutes=9))
    [line] = [r for r in records if r["outcome"] == "succeeded"][:1]
    for key in (
        "ts",
        "policy",
        "target",
        "verdict",
        "action",
        "params",
        "decision",
        "reason",
        "mode",
        "outcome",
        "before",
        "after",
    ):
        assert key in line
    assert line["ts"].endswith("Z")
    assert line["before"]["minReplicas"] == 1 and line["after"]["minReplicas"] == 2
    assert line["decision"] == "allow" and line["mode"] == "live"
