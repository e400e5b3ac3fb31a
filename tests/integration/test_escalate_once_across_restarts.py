"""Once per breach means once across restarts too: the memory of having told a person is
rebuilt from the audit log like every other."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.audit.log import read_records
from controller.audit.rotation import rotated, series
from controller.audit.series import check_series
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller, webhook
from tests.integration.test_fail_static import fleet_policy
from tests.scenarios import fleet_scenario

pytestmark = pytest.mark.anyio


async def test_one_breach_over_30_restarts_is_escalated_once(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """A watched objective in breach from minute 7 on; the controller restarted every
    30 s from minute 9 to minute 24, each time rebuilding its memory from the log: one
    needs-human line, one message."""
    emu, base_url = emulator
    policy = make_policy(remediation=[])
    async with webhook() as (hook, sent):
        settings = emulator_settings(base_url, tmp_path, mode="live", escalationWebhook=hook)
        for restart in range(31):
            until = START + timedelta(minutes=9, seconds=30 * restart)
            records = await run_controller(settings, [policy], clock, until)
    escalations = [r for r in records if r["kind"] == "escalation"]
    assert len(escalations) == 1 and escalations[0]["reason"].startswith("needs a human")
    assert [m["kind"] for m in sent] == ["needs-human"]
    assert emu.writes == 0


async def test_fail_static_is_escalated_once_per_episode_across_restarts(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """All eight apps spike at 2 m, calm down at 10 m and spike again at 20 m; the
    controller restarts every 2 minutes: two escalations (one per episode), and the end
    of the first written in between."""
    timeline = [
        f"{{at: {at}m, resource: app-{i}, cpuDemandCores: {demand}}}"
        for at, demand in ((2, 0.8), (10, 0.2), (20, 0.8))
        for i in range(8)
    ]
    emu = Emulator(fleet_scenario(tmp_path, [0.2] * 8, timeline), now=clock.now, wobble=0)
    policies = [fleet_policy(i) for i in range(8)]
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        for restart in range(1, 16):
            until = START + timedelta(minutes=2 * restart)
            records = await run_controller(settings, policies, clock, until)
    fleet_lines = [
        r["kind"] for r in records if r["kind"] == "resolved" or "fail static" in r["reason"]
    ]
    assert [k for k in fleet_lines if k in ("escalation", "resolved")] == [
        "escalation",
        "resolved",
        "escalation",
    ]
    assert emu.writes == 0


async def test_a_breaker_opened_before_restarts_and_rotations_stays_open(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Every write fails; the controller restarts every 2 minutes, its log rotating every
    few lines: the breaker opens once after three failures, holds for its 30 minutes
    across the restarts, lets one trial through, and re-opens: two escalations, four
    attempts — as without restarts."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now, wobble=0)
    emu.clear_faults()
    emu.set_fault("lro-fail", duration_s=3 * 3600)
    policy = make_policy(guards={"cooldown": "2m", "maxActionsPerHour": 20})
    async with emu.serve() as base_url:
        rotation = {"maxBytes": 4096}
        settings = emulator_settings(base_url, tmp_path, mode="live", auditRotation=rotation)
        for restart in range(1, 26):
            await run_controller(settings, [policy], clock, START + timedelta(minutes=2 * restart))
    path = Path(settings.audit_path)
    records = [r for f in series(path) for r in read_records(f) if r["kind"] != "snapshot"]
    assert len(rotated(path)) > 25 and check_series(path).ok
    attempts = [r for r in records if r["kind"] == "result"]
    escalations = [r for r in records if r["kind"] == "escalation"]
    assert [r["outcome"] for r in attempts] == ["failed"] * 4
    assert len(escalations) == 2 and all("breaker" in e["reason"] for e in escalations)
    opened = datetime.fromisoformat(escalations[0]["ts"])
    assert datetime.fromisoformat(attempts[3]["ts"]) - opened >= timedelta(minutes=30)
