"""The demo end to end, in live and dry-run, through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.audit.log import read_records
from controller.cli import main


def demo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[list[str], dict[str, Any]]:
    assert main(["demo", "--instant", *args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_live_demo_scales_out_and_cpu_recovers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """cpu-spike, live: a breach, scaleOut through the SDK, CPU back under 70 %."""
    lines, summary = demo(capsys, "--audit", str(tmp_path / "audit.jsonl"))
    assert summary["scenario"] == "cpu-spike" and summary["mode"] == "live"
    assert summary["actions"]["scaleOut"] >= 1
    assert summary["writes"] >= 1
    final = summary["final"]["agentstudio-api"]
    assert final["cpuPercent"] < 70 and final["replicas"] > 1
    assert any("breach" in line and "scaleOut" in line and "succeeded" in line for line in lines)
    records = list(read_records(tmp_path / "audit.jsonl"))
    assert any(r["verdict"] == "unknown" for r in records), "the scripted metrics outage shows"


def test_dry_run_demo_records_the_same_first_decision_and_writes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run: the first decision is the live one, as would-run, and nothing is written."""
    _, live = demo(capsys)
    _, dry = demo(capsys, "--dry-run")
    assert dry["mode"] == "dry-run" and dry["writes"] == 0 and dry["actions"] == {}
    assert dry["firstDecision"] == {**live["firstDecision"], "outcome": "would-run"}
    assert dry["final"]["agentstudio-api"]["replicas"] == 1


def test_memory_leak_demo_restarts_the_revision(capsys: pytest.CaptureFixture[str]) -> None:
    """memory-leak: memory climbs past 80 %, a restart clears it."""
    _, summary = demo(capsys, "--scenario", "memory-leak")
    assert summary["actions"].get("restartRevision") == 1
    assert summary["final"]["agentstudio-worker"]["memoryPercent"] < 80


def test_steady_demo_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """steady: no breach, no decision, no write."""
    _, summary = demo(capsys, "--scenario", "steady")
    assert summary["actions"] == {} and summary["writes"] == 0 and summary["firstDecision"] is None


def test_unknown_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario name that is not shipped is bad input."""
    assert main(["demo", "--scenario", "no-such-thing"]) == 2
    assert "no-such-thing" in capsys.readouterr().err


def test_paused_demo_writes_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REMEDIATOR_PAUSE=true: the spike is seen and every proposal is denied; writes is 0."""
    monkeypatch.setenv("REMEDIATOR_PAUSE", "true")
    _, summary = demo(capsys)
    assert summary["writes"] == 0 and summary["actions"] == {}
    assert summary["denied"].get("paused", 0) >= 1
