"""`remediator report --audit`: the report of what a dry-run would have done, and why,
kept apart from what a live controller applied."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from controller.audit.log import read_records
from controller.cli import main


def report_of(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *audits: Path
) -> tuple[dict, str]:  # type: ignore[type-arg]
    report = tmp_path / "report.html"
    capsys.readouterr()
    assert main(["report", "--audit", *map(str, audits), "--report", str(report)]) == 0
    [result] = json.loads(capsys.readouterr().out)["backtests"]
    [summary] = result["targets"].values()
    return summary, report.read_text()


def test_a_dry_run_audit_becomes_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One proposal repeated while nothing changed is one would-run, none applied; the
    header says dry-run; each row shows before → after; the proposal is priced."""
    audit = tmp_path / "audit.jsonl"
    assert main(["demo", "--instant", "--dry-run", "--audit", str(audit)]) == 0
    summary, html = report_of(capsys, tmp_path, audit)
    records = list(read_records(audit))
    would = [r for r in records if r.get("outcome") == "would-run"]
    denied = [r for r in records if r.get("decision") == "deny"]
    assert len(would) > 1 and {(r["action"], str(r["params"])) for r in would} == {
        ("scaleOut", str(would[0]["params"]))
    }
    assert summary["actions"] == {}
    assert summary["would_run"] == {"scaleOut": 1}
    assert sum(summary["denied"].values()) == len(denied)
    assert summary["cost"]["total"] == 0
    assert summary["would_cost"]["units"]["replica-hours"] > 0
    assert summary["would_cost"]["total"] > 0
    assert "<svg" in html and "cooldown" in html
    assert "Remediator audit report (dry-run)" in html
    assert 'data-mode="dry-run"' in html and "nothing was applied" in html
    assert 'class="marker acted"' not in html and "action applied" in html  # legend only
    assert re.search(r"<td>actions applied</td><td class=\"n\">0</td>", html)
    assert re.search(
        r"would have run \(distinct proposals, not applied\)</td><td class=\"n\">1<", html
    )
    assert "<td>minReplicas 1→2</td>" in html


def test_a_mixed_log_counts_applied_and_would_run_apart(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dry, live = tmp_path / "dry.jsonl", tmp_path / "live.jsonl"
    assert main(["demo", "--instant", "--dry-run", "--audit", str(dry)]) == 0
    assert main(["demo", "--instant", "--audit", str(live)]) == 0
    applied = [r for r in read_records(live) if r.get("kind") == "result"]
    summary, html = report_of(capsys, tmp_path, dry, live)
    assert summary["actions"] == {"scaleOut": len(applied)} and len(applied) == 2
    assert summary["would_run"] == {"scaleOut": 1}
    assert summary["cost"]["units"]["replica-hours"] > 0 and summary["cost"]["total"] > 0
    assert 'data-mode="mixed"' in html
    live_only, _ = report_of(capsys, tmp_path, live)
    assert live_only["would_run"] == {} and live_only["cost"]["total"] > 0
