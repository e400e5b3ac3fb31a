"""Logs: JSON in containers, and every line of a pass bound to its reconcile id, policy
and target, so one incident can be followed through the log."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.telemetry import configure_logging
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller

pytestmark = pytest.mark.anyio


async def test_every_pass_line_carries_reconcile_id_policy_and_target(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", json=True)
    try:
        settings = emulator_settings(emulator[1], tmp_path, mode="live")
        policy = make_policy()
        records = await run_controller(settings, [policy], clock, START + timedelta(minutes=10))
    finally:
        configure_logging("info")
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    passes = [line for line in lines if line["event"] in ("intent", "result", "verdict")]
    assert passes, "the run logged its passes"
    for line in passes:
        assert line["policy"] == policy.name
        assert line["target"] == policy.target.resource_id
        assert len(line["reconcile_id"]) == 12
    intent = next(line for line in passes if line["event"] == "intent")
    result = next(line for line in passes if line["event"] == "result")
    assert intent["reconcile_id"] == result["reconcile_id"]  # one pass, one id
    assert any(r["reconcile_id"] == intent["reconcile_id"] for r in records)  # and in the audit
