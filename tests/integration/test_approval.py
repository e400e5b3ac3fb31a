"""Approval gates: a rung marked `approval: required` waits for a human."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
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


def settings_at(tmp_path: Path, audit: Path, now: datetime) -> Path:
    """Settings naming the audit log, with the controller's clock at ``now``: the
    approve command judges expiry by the controller's time, not the wall's."""
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"auditPath: {audit}\n"
        f"clock: {{anchorWall: {time.time()}, anchorScenario: '{now.isoformat()}', speed: 1}}\n"
    )
    return config


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
        config = settings_at(tmp_path, settings.audit_path, clock.now())
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


async def test_only_a_pending_request_can_be_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown id, a second answer and an expired request are refused (exit 1) and
    write nothing; `remediator approvals` lists what waits, with its action, parameters,
    target and expiry; `--by` defaults to user@host."""
    emu, clock, policy = leak_policy()
    start = clock.now()
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, mode="live")
        first = await run_controller(settings, [policy], clock, start + timedelta(minutes=20))
    [pending] = [r for r in first if r["decision"] == "pending-approval"]
    rid = pending["approval_id"]
    config = settings_at(tmp_path, settings.audit_path, clock.now())
    capsys.readouterr()

    assert main(["approve", "deadbeef", "--config", str(config)]) == 1
    assert "no approval request with this id" in capsys.readouterr().err
    assert not settings.approvals_path.exists()

    assert main(["approvals", "--config", str(config), "--output", "json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == rid and listed["action"] == "restartRevision"
    assert listed["target"] == pending["target"] and listed["params"] == pending["params"]
    assert (
        listed["expiresAt"]
        == (
            datetime.fromisoformat(pending["ts"].replace("Z", "+00:00")) + timedelta(minutes=30)
        ).isoformat()
    )
    assert main(["approvals", "--config", str(config)]) == 0
    assert rid in capsys.readouterr().out

    assert main(["approve", rid, "--config", str(config)]) == 0
    assert main(["reject", rid, "--config", str(config)]) == 1
    assert "already answered (approve)" in capsys.readouterr().err
    lines = settings.approvals_path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["by"].count("@") == 1
    assert main(["approvals", "--config", str(config)]) == 0
    assert "no approval requests pending" in capsys.readouterr().out

    later = settings_at(tmp_path, settings.audit_path, clock.now() + timedelta(minutes=40))
    settings.approvals_path.unlink()
    assert main(["approve", rid, "--config", str(later)]) == 1
    assert "expired" in capsys.readouterr().err
    assert not settings.approvals_path.exists()
