"""The audit log is the memory: restarts keep cooldowns, interrupted actions are settled."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from controller.audit.log import AuditLog, AuditUnavailable, Record, check_file, read_records
from controller.audit.rotation import rotated, series
from controller.audit.series import check_series
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import actions, audit_records, raw_patch, run_controller

pytestmark = pytest.mark.anyio
POLICY = make_policy(guards={"cooldown": "20m", "maxActionsPerHour": 10})


async def test_a_restart_keeps_the_cooldown(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """After a restart the cooldown of the action before it still holds."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    first = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=10))
    assert len(actions(first)) == 1 and emu.writes == 1
    # CPU is still over 70 % on two replicas: without memory this run would scale again.
    second = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=20))
    assert emu.writes == 1
    later = second[len(first) :]
    assert any(r["guard"] == "cooldown" for r in later)
    assert check_file(settings.audit_path).ok


async def test_a_restart_after_rotation_keeps_the_cooldown_from_the_active_file_alone(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The log rotating every few lines, and every rotated file removed before the
    restart: the snapshot at the head of the active file still holds the cooldown."""
    emu, base_url = emulator
    rotation = {"maxBytes": 4096}
    settings = emulator_settings(base_url, tmp_path, mode="live", auditRotation=rotation)
    path = Path(settings.audit_path)
    await run_controller(settings, [POLICY], clock, START + timedelta(minutes=10))
    assert emu.writes == 1 and check_series(path).ok
    first = [r for f in series(path) for r in read_records(f)]
    assert len(actions(first)) == 1 and len(rotated(path)) >= 2
    for old in rotated(path):
        old.unlink()  # a start must not need them
    second = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=20))
    assert emu.writes == 1
    assert second[0]["kind"] == "snapshot"
    assert any(r["guard"] == "cooldown" for r in second)
    assert check_file(path).ok


def intent_line(min_replicas: int) -> Record:
    after = {"minReplicas": min_replicas, "maxReplicas": 10}
    return Record.model_validate(
        {
            "ts": START + timedelta(minutes=8),
            "kind": "intent",
            "policy": POLICY.name,
            "target": POLICY.target.resource_id,
            "verdict": "breach",
            "verdicts": [],
            "action": "scaleOut",
            "params": after,
            "decision": "allow",
            "reason": "guards passed",
            "mode": "live",
            "outcome": None,
            "before": {"minReplicas": 1},
            "after": after,
            "reconcile_id": "crashed",
            "step": 0,
        }
    )


@pytest.mark.parametrize(("already_applied", "outcome"), [(True, "succeeded"), (False, "failed")])
async def test_an_interrupted_action_is_settled_by_reading_not_retried(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    already_applied: bool,
    outcome: str,
) -> None:
    """An intent without a result is closed from what the app shows; nothing is re-run."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    with AuditLog(settings.audit_path) as audit:
        audit.append(intent_line(2))
    if already_applied:  # the crash came after Azure accepted the write
        body = {"properties": {"template": {"scale": {"minReplicas": 2}}}}
        await raw_patch(base_url, POLICY.target.resource_id, body)
    writes_before = emu.writes
    await clock.advance(9 * 60)
    records = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=12))
    settled = [r for r in records if r["kind"] == "result" and r["intent"] == 1]
    assert [r["outcome"] for r in settled] == [outcome]
    assert "settled after an interruption" in settled[0]["reason"]
    assert emu.writes == writes_before  # the cooldown from the intent holds: no blind retry
    assert check_file(settings.audit_path).ok


class BrokenAudit:
    """A sink whose disk is gone."""

    def append(self, record: Record) -> int:
        raise AuditUnavailable("disk full")

    def problem(self) -> str | None:
        return "disk full"


async def test_nothing_runs_when_the_audit_cannot_be_written(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Fail closed: without a written intent, the action does not run."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    loaded = [LoadedPolicy(POLICY, "test", 1)]
    async with (
        open_runtime(
            settings, clock=clock, policies=loaded, audit=BrokenAudit(), rng=random.Random(1)
        ) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=15), sleepers=1)
        tg.cancel_scope.cancel()
    assert emu.writes == 0
    assert runtime.loop.health.failures[POLICY.name] > 0
    assert audit_records(Path(settings.audit_path)) == []
