"""`remediator report --audit`: the report of what a dry-run would have done, and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.audit.log import read_records
from controller.cli import main


def test_a_dry_run_audit_becomes_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    assert main(["demo", "--instant", "--dry-run", "--audit", str(audit)]) == 0
    capsys.readouterr()
    report = tmp_path / "report.html"
    assert main(["report", "--audit", str(audit), "--report", str(report)]) == 0
    [result] = json.loads(capsys.readouterr().out)["backtests"]
    [(policy, summary)] = result["targets"].items()
    records = list(read_records(audit))
    would = [r for r in records if r.get("outcome") == "would-run"]
    denied = [r for r in records if r.get("decision") == "deny"]
    assert summary["actions"] == {"scaleOut": len(would)} and len(would) >= 1
    assert sum(summary["denied"].values()) == len(denied)
    html = report.read_text()
    assert policy in html and "<svg" in html and "cooldown" in html
