"""Stepping back to the baseline once healthy, and never into a breach (no flapping)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from controller.cli import main
from controller.clock import VirtualClock
from controller.emulator import Emulator, Scenario
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller
from tests.scenarios import app_scenario

pytestmark = pytest.mark.anyio


def spike_and_calm(folder: Path) -> Scenario:
    timeline = ["{at: 2m, cpuDemandCores: 0.8}", "{at: 25m, cpuDemandCores: 0.15}"]
    return app_scenario(folder, "spike-and-calm", timeline)


STEP_BACK = {"baseline": {"minReplicas": 1}, "stableFor": "10m", "cooldown": "10m"}


async def test_steps_back_to_the_baseline_one_step_at_a_time(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """After the spike: two scale-outs; after the calm: two scale-ins, back to one replica."""
    emu = Emulator(spike_and_calm(tmp_path), now=clock.now, wobble=0)
    policy = make_policy(stepBack=STEP_BACK, guards={"cooldown": "3m", "maxActionsPerHour": 10})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=90))
    ran = [(r["action"], r["after"]["minReplicas"]) for r in records if r["kind"] == "result"]
    assert ran == [("scaleOut", 2), ("scaleOut", 3), ("scaleIn", 2), ("scaleIn", 1)]
    ins = [r["ts"] for r in records if r["kind"] == "result" and r["action"] == "scaleIn"]
    # healthy (on 3 replicas) from ~13 min, but held while one fewer would breach: the
    # calm starts at 25 min, and the recent window's worst value must pass first
    assert ins[0] > "2026-01-01T00:25"
    assert any("step back held" in r["reason"] for r in records if r["ts"] < ins[0])
    assert _minutes(ins[0], ins[1]) >= 10  # the step-back cooldown between steps
    assert emu.state()["resources"][policy.target.resource_id]["minReplicas"] == 1


async def test_unknown_data_never_steps_back(tmp_path: Path, clock: VirtualClock) -> None:
    """With metrics failing all through the calm, nothing is scaled in."""
    emu = Emulator(spike_and_calm(tmp_path), now=clock.now, wobble=0)
    policy = make_policy(stepBack=STEP_BACK, guards={"cooldown": "3m", "maxActionsPerHour": 10})
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        await run_controller(settings, [policy], clock, START + timedelta(minutes=24))
        emu.set_fault("metrics-error", duration_s=3600)
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=80))
    assert not any(r["action"] == "scaleIn" for r in records)
    assert emu.state()["resources"][policy.target.resource_id]["minReplicas"] == 3


def test_flapping_for_two_hours_gives_one_action(capsys: pytest.CaptureFixture[str]) -> None:
    """CPU crossing 70 % every 30 s for two hours: one scale-out, no scale-in (it would breach)."""
    assert main(["demo", "--instant", "--scenario", "flapping"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["actions"] == {"scaleOut": 1}
    assert summary["writes"] == 1


def _minutes(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 60
