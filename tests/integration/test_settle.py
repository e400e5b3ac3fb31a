"""Settling interrupted actions: every settled result says what the resource shows.

A crash (simulated by a sink that stops the process right after or right before a line)
or a full disk leaves intents without results. At the next start — or, for a result
that could not be written, at the next pass — each is closed by reading the resource:
"succeeded" only when it shows exactly what the intent meant to write.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.audit.log import AuditLog, AuditUnavailable, Record, check_file
from controller.audit.replay import replay
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import audit_records, raw_patch, run_controller
from tests.integration.test_audit_memory import intent_line

pytestmark = pytest.mark.anyio
POLICY = make_policy(guards={"cooldown": "5m", "maxActionsPerHour": 10})
SETTLED = "settled after an interruption"


class Crashed(BaseException):
    """The process died here (nothing after this point runs)."""


class CrashingAudit:
    """The real file sink, with the process dying at one point: right after the first
    intent is on disk (before the PATCH), or right before its result is written."""

    def __init__(self, log: AuditLog, at: str) -> None:
        self.log, self.at = log, at

    def append(self, record: Record) -> int:
        if self.at == "before-result" and record.kind == "result":
            raise Crashed
        seq = self.log.append(record)
        if self.at == "after-intent" and record.kind == "intent":
            raise Crashed
        return seq

    def problem(self) -> str | None:
        return self.log.problem()


class FullDisk:
    """The file sink with the disk full for the first ``results`` result lines."""

    def __init__(self, log: AuditLog, results: int) -> None:
        self.log, self.failing = log, results

    def append(self, record: Record) -> int:
        if record.kind == "result" and self.failing > 0:
            self.failing -= 1
            raise AuditUnavailable("disk full")
        return self.log.append(record)

    def problem(self) -> str | None:
        return self.log.problem()


async def run_with(sink: Any, settings: Any, clock: VirtualClock, minutes: float) -> None:
    loaded = [LoadedPolicy(POLICY, "test", 1)]
    try:
        async with (
            open_runtime(
                settings, clock=clock, policies=loaded, audit=sink, rng=random.Random(7)
            ) as runtime,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(runtime.loop.run)
            await clock.drive(START + timedelta(minutes=minutes), sleepers=1)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        crashed, rest = group.split(Crashed)
        assert crashed is not None and rest is None, rest


def min_replicas(emu: Emulator) -> int:
    return int(emu.state()["resources"][POLICY.target.resource_id]["minReplicas"])


@pytest.mark.parametrize(
    ("crash", "outcome", "writes"),
    [("after-intent", "failed", 0), ("before-result", "succeeded", 1)],
)
async def test_a_crashed_action_is_settled_by_what_the_resource_shows(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    crash: str,
    outcome: str,
    writes: int,
) -> None:
    """The intent the controller itself writes records what it means to write, so the
    settle after a crash tells a PATCH never sent (failed) from one that landed."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    with AuditLog(settings.audit_path) as log:
        await run_with(CrashingAudit(log, crash), settings, clock, 12)
    [intent] = [r for r in audit_records(Path(settings.audit_path)) if r["kind"] == "intent"]
    assert intent["after"] == {"minReplicas": 2, "maxReplicas": 10}
    assert emu.writes == writes
    records = await run_controller(settings, [POLICY], clock, clock.now() + timedelta(minutes=1))
    [settled] = [r for r in records if r["kind"] == "result" and r["intent"] == intent["seq"]]
    assert SETTLED in settled["reason"]
    assert settled["outcome"] == outcome
    assert settled["after"]["minReplicas"] == min_replicas(emu) == 1 + writes
    assert check_file(settings.audit_path).ok


async def test_every_open_intent_is_settled(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Three intents left open (1 → 2 and 2 → 3 landed, 3 → 4 was never sent): all three
    settled, each as the resource shows it — the first by what the second read before it
    acted — none retried, none left open."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    with AuditLog(settings.audit_path) as audit:
        for wanted in (2, 3, 4):
            line = intent_line(wanted)
            audit.append(line.model_copy(update={"before": {"minReplicas": wanted - 1}}))
    body = {"properties": {"template": {"scale": {"minReplicas": 3}}}}
    await raw_patch(base_url, POLICY.target.resource_id, body)
    writes = emu.writes
    await clock.advance(9 * 60)
    records = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=10))
    settled = {r["intent"]: r["outcome"] for r in records if SETTLED in r["reason"]}
    assert settled == {1: "succeeded", 2: "succeeded", 3: "failed"}
    assert replay(records).open_intents == {}
    assert emu.writes == writes
    assert check_file(settings.audit_path).ok


async def test_a_result_the_disk_refused_is_settled_at_the_next_pass(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The action ran but its result could not be written: the same process settles it
    from the resource on its next pass, without sending it again, and counts it once."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    with AuditLog(settings.audit_path) as log:
        await run_with(FullDisk(log, results=1), settings, clock, 12)
    records = audit_records(Path(settings.audit_path))
    intents = [r["seq"] for r in records if r["kind"] == "intent"]
    closed = [r["intent"] for r in records if r["kind"] == "result"]
    assert intents and sorted(closed) == intents  # every intent has exactly one result
    [settled] = [r for r in records if SETTLED in r["reason"]]
    assert settled["intent"] == intents[0] and settled["outcome"] == "succeeded"
    assert emu.writes == len(intents)  # nothing sent twice
    assert min_replicas(emu) == 1 + len(intents)
    assert replay(records).open_intents == {}


class HeadLost:
    """The file sink whose head write fails once, just after a result line is on disk."""

    def __init__(self, log: AuditLog) -> None:
        self.log, self.failing = log, 1

    def append(self, record: Record) -> int:
        seq = self.log.append(record)
        if record.kind == "result" and self.failing > 0:
            self.failing -= 1
            refused = AuditUnavailable("cannot record the log's head")
            refused.written = True
            raise refused
        return seq

    def problem(self) -> str | None:
        return self.log.problem()


async def test_a_result_on_disk_whose_head_failed_is_not_written_twice(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The result line stands though what followed it failed: the intent is closed once."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    with AuditLog(settings.audit_path) as log:
        await run_with(HeadLost(log), settings, clock, 12)
    records = audit_records(Path(settings.audit_path))
    closed = [r["intent"] for r in records if r["kind"] == "result"]
    assert closed and len(closed) == len(set(closed))
    assert not any(SETTLED in r["reason"] for r in records)
    assert emu.writes == len([r for r in records if r["kind"] == "intent"])
