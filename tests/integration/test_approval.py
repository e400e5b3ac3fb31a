"""Approval gates: a rung marked `approval: required` waits for a human."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.log import check_file
from controller.cli import main
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.policy.schema import Policy
from tests.conftest import emulator_settings
from tests.integration.helpers import run_controller

pytestmark = pytest.mark.anyio


def leak_policy() -> tuple[Emulator, VirtualClock, Policy]:
    scenario = load_scenario("memory-leak")
    clock = VirtualClock(scenario.start)
    data = dict(scenario.policies[0])
    data["remediation"] = [{"restartRevision": {"approval": "required"}}]
    return Emulator(scenario, now=clock.now), clock, Policy.model_validate(data)


@pytest.mark.parametrize("answer", ["approve", "reject"])
async def test_a_gated_restart_waits_for_a_human(tmp_path: Path, answer: str) -> None:
    """Proposed, escalated and recorded as pending-approval with an id; nothing runs until
    `remediator approve ID`; a rejection is recorded and the rung is not asked again."""
    emu, clock, policy = leak_policy()
    start = clock.now()
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        first = await run_controller(settings, [policy], clock, start + timedelta(minutes=20))
        [pending] = [r for r in first if r["decision"] == "pending-approval"]
        assert pending["approval_id"] and pending["action"] == "restartRevision"
        assert emu.writes == 0
        config = tmp_path / "settings.yaml"
        config.write_text(f"auditPath: {settings.audit_path}\n")
        assert main([answer, pending["approval_id"], "--config", str(config), "--by", "sre"]) == 0
        # a restart in between: the request and its answer come back from the log
        records = await run_controller(settings, [policy], clock, start + timedelta(minutes=24))
    answers = [r for r in records if r["kind"] == "approval"]
    assert [(r["decision"], r["reason"]) for r in answers] == [(answer, f"{answer} by sre")]
    if answer == "approve":
        assert emu.writes == 1
        assert any(r["kind"] == "result" and r["action"] == "restartRevision" for r in records)
    else:
        assert emu.writes == 0
        assert sum(1 for r in records if r["decision"] == "pending-approval") == 1
    assert check_file(settings.audit_path).ok
