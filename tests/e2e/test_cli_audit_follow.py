"""`remediator audit show --follow` as a process: new lines appear; SIGTERM or Ctrl-C stops it
cleanly (exit 0, no traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.log import AuditLog, Record
from tests.conftest import APP_ID, START

COMMAND = (sys.executable, "-m", "controller")


def record(minute: int, reason: str) -> Record:
    return Record.model_validate(
        {
            "ts": START + timedelta(minutes=minute),
            "kind": "verdict",
            "policy": "api-cpu",
            "target": APP_ID,
            "verdict": "breach",
            "verdicts": [],
            "action": None,
            "params": {},
            "decision": None,
            "reason": reason,
            "mode": "live",
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": f"r{minute}",
        }
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_follow_prints_appended_records_until_stopped(tmp_path: Path, stop: int) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log) as audit:
        audit.append(record(1, "first"))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    proc = subprocess.Popen(
        [*COMMAND, "audit", "show", str(log), "--follow", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=inherited,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["reason"] == "first"  # it is running
        with AuditLog(log) as audit:  # the controller, restarted, writes on
            audit.append(record(2, "second"))
        assert json.loads(proc.stdout.readline())["reason"] == "second"
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == "" and err == ""
