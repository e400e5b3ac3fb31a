"""The kill switch: environment, pause file, app tag or resource-group tag stop all actions."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from controller.cli import main
from controller.clock import VirtualClock
from controller.emulator import Emulator
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import actions, run_controller

pytestmark = pytest.mark.anyio
GROUP = make_policy().target.resource_id.split("/providers/")[0]


@pytest.mark.parametrize(
    ("switch", "reason"),
    [
        ("env", "paused by REMEDIATOR_PAUSE"),
        ("file", "paused by "),
        ("app-tag", "remediator-pause=true on the app"),
        ("group-tag", "remediator-pause=true on resource group rg-agentstudio-prod"),
    ],
)
async def test_each_switch_stops_every_action(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    switch: str,
    reason: str,
) -> None:
    """Through a whole CPU spike, a paused controller proposes, records why not, and writes nothing."""
    emu, base_url = emulator
    overrides = {"mode": "live", "pause": switch == "env"}
    settings = emulator_settings(base_url, tmp_path, **overrides)
    if switch == "file":
        settings.pause_path.write_text(json.dumps({"reason": "change freeze"}))
    if switch == "app-tag":
        emu.set_tags(make_policy().target.resource_id, {"remediator-pause": "true"})
    if switch == "group-tag":
        emu.set_tags(GROUP, {"remediator-pause": "True", "owner": "sre"})
    records = await run_controller(settings, [make_policy()], clock, START + timedelta(minutes=15))
    denied = [r for r in records if r["decision"] == "deny"]
    assert emu.writes == 0 and actions(records) == []
    assert denied and all(r["guard"] == "paused" and reason in r["reason"] for r in denied)


async def test_pause_takes_effect_within_one_interval_and_survives_a_restart(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """`remediator pause` mid-incident: no action after the next pass, even after a restart;
    `remediator resume` lets the next step run."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    policy = make_policy(guards={"cooldown": "1m", "maxActionsPerHour": 10})
    first = await run_controller(settings, [policy], clock, START + timedelta(minutes=8))
    assert len(actions(first)) == 1
    config = tmp_path / "settings.yaml"
    config.write_text(f"auditPath: {settings.audit_path}\n")
    assert main(["pause", "--config", str(config), "--reason", "investigating"]) == 0
    paused = await run_controller(settings, [policy], clock, START + timedelta(minutes=20))
    later = paused[len(first) :]
    assert emu.writes == 1
    assert any(r["guard"] == "paused" and "investigating" in r["reason"] for r in later)
    assert main(["resume", "--config", str(config)]) == 0
    resumed = await run_controller(settings, [policy], clock, START + timedelta(minutes=30))
    assert len(actions(resumed)) == 2 and emu.writes == 2
