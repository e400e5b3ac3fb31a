"""A controller on a scenario clock (the demo, the emulator, a test) still exports wall
time, and its audit lines say when they were written, so `RemediatorLoopStalled` does not
fire on a demo and `audit show --since 10m` means the last ten minutes of the wall."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client import generate_latest

from controller.audit.log import AuditLog
from controller.cli import main
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from tests.conftest import START, emulator_settings, make_policy

pytestmark = pytest.mark.anyio


def last_pass(exposition: str) -> float:
    [line] = [
        line
        for line in exposition.splitlines()
        if line.startswith("remediator_last_pass_timestamp_seconds ")
    ]
    return float(line.split()[1])


async def test_scenario_clock_exports_wall_time_and_since_reads_it(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = emulator_settings(emulator[1], tmp_path)
    loaded = [LoadedPolicy(make_policy(), "test", 1)]
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    # the first part of the run, written (by the wall) an hour ago
    with AuditLog(settings.audit_path, wall=lambda: hour_ago) as earlier:
        async with (
            open_runtime(settings, clock=clock, policies=loaded, audit=earlier) as runtime,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(runtime.loop.run)
            await clock.drive(START + timedelta(minutes=6), sleepers=1)
            tg.cancel_scope.cancel()
    before = len(settings.audit_path.read_text().splitlines())
    # the rest, now: the controller wires the wall beside its scenario clock itself
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(2)) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=12), sleepers=1)
        exported = last_pass(generate_latest(runtime.metrics.registry).decode())
        tg.cancel_scope.cancel()
    assert abs(exported - time.time()) < 60  # wall time, not 2026-01-01 of the scenario

    records = [json.loads(line) for line in settings.audit_path.read_text().splitlines()]
    assert before >= 2 and len(records) > before
    assert all(r["ts"].startswith("2026-01-01T00:") for r in records)  # scenario time kept
    capsys.readouterr()  # the run's log lines
    assert main(["audit", "show", str(settings.audit_path), "--since", "10m"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in shown] == [f"#{r['seq']}" for r in records[before:]]
    assert all("(scenario 2026-01-01T00:" in line for line in shown)
    assert main(["audit", "show", str(settings.audit_path), "--since", "2h"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(records)
