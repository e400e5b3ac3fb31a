"""`remediator audit show`: records filtered, one line each, and followed as they are written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.audit.log import AuditLog, Record
from controller.audit.show import RecordFilter, Tail, follow, parse_kinds, parse_since
from controller.cli import main
from controller.render import audit_line
from tests.conftest import APP_ID, START

WORKER_ID = APP_ID.replace("agentstudio-api", "agentstudio-worker")


def record(minute: int, kind: str = "decision", **changes: Any) -> Record:
    fields: dict[str, Any] = {
        "ts": START + timedelta(minutes=minute),
        "kind": kind,
        "policy": "api-cpu",
        "target": APP_ID,
        "verdict": "breach",
        "verdicts": [{"objective": "cpu", "state": "breach", "value": 91.0}],
        "action": "scaleOut",
        "params": {"minReplicas": 2},
        "decision": "deny",
        "guard": "cooldown",
        "reason": "cooldown: last action 30s ago",
        "mode": "live",
        "outcome": None,
        "before": {},
        "after": {},
        "reconcile_id": f"r{minute}",
        **changes,
    }
    return Record.model_validate(fields)


RECORDS = [
    record(1, "verdict", action=None, decision=None, guard=None, reason="cpu breach"),
    record(2),
    record(3, "intent", decision="allow", guard=None, reason="guards passed"),
    record(4, "result", decision="allow", guard=None, outcome="succeeded", reason="done"),
    record(5, policy="worker-memory", target=WORKER_ID, verdict="ok", action=None),
    record(6, "verification", decision="allow", guard=None, efficacy="improved"),
]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit:
        for item in RECORDS:
            audit.append(item)
    return path


def show(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> list[str]:
    assert main(["audit", "show", *args]) == code
    return capsys.readouterr().out.splitlines()


def test_text_is_one_line_per_record_with_the_fields_that_matter(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = show(capsys, str(log))
    assert len(lines) == len(RECORDS)
    result = lines[3].split()
    assert result[:3] == ["#4", "2026-01-01T00:04:00Z", "result"]
    assert result[3:8] == ["api-cpu", "breach", "scaleOut", "allow", "succeeded"]
    assert lines[3].endswith("done")
    assert "deny:cooldown" in lines[1]  # the guard that denied, with the decision
    assert lines[0].split()[5:8] == ["-", "-", "-"]  # a verdict line: no action, decision, outcome
    assert "improved" in lines[5]  # a verification's efficacy stands for its outcome


def test_filters_combine(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--policy exact, --target a case-blind substring, --kind a list, --since a time."""
    assert len(show(capsys, str(log), "--policy", "worker-memory")) == 1
    assert len(show(capsys, str(log), "--target", "CONTAINERAPPS/AGENTSTUDIO-API")) == 5
    kinds = show(capsys, str(log), "--kind", "intent,result")
    assert [line.split()[2] for line in kinds] == ["intent", "result"]
    since = show(capsys, str(log), "--since", "2026-01-01T00:04Z", "--policy", "api-cpu")
    assert [line.split()[0] for line in since] == ["#4", "#6"]


def test_json_output_is_the_records_as_written(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = [json.loads(line) for line in log.read_text().splitlines()]
    shown = [json.loads(line) for line in show(capsys, str(log), "--output", "json")]
    assert shown == written


def test_the_log_comes_from_the_settings(
    log: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(f"auditPath: {log.name}\n")
    assert len(show(capsys, "--config", str(config), "--kind", "verification")) == 1


def test_a_torn_last_line_is_skipped_not_a_crash(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with log.open("a") as file:
        file.write('{"ts": "2026-01-01T00:10:00Z", "kind": "inte')
    assert len(show(capsys, str(log))) == len(RECORDS)
    assert capsys.readouterr().err == ""


def test_a_broken_line_inside_is_named_and_the_command_fails(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rest is still shown; exit 1 says the log needs `audit verify`."""
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([*lines[:2], "garbage\n", *lines[2:]]))
    assert main(["audit", "show", str(log)]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == len(RECORDS)
    assert f"{log}:3: skipped" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--kind", "intent,bogus"],
        ["--since", "yesterday-ish"],
    ],
)
def test_bad_filters_are_usage_errors(
    log: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "show", str(log), *args])
    assert exit_.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_a_missing_log_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(tmp_path / "nope.jsonl")]) == 2
    assert "no audit log here" in capsys.readouterr().err


def test_since_takes_a_duration_or_a_time() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_since("30m", now) == datetime(2026, 1, 1, 11, 30, tzinfo=UTC)
    assert parse_since("2026-01-01T00:00Z", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01", now) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected a duration"):
        parse_since("soon", now)
    assert parse_kinds("intent, result") == {"intent", "result"}


def test_follow_prints_lines_as_they_are_appended(log: Path) -> None:
    """A line appended between polls shows on the next; a torn one waits to be completed."""
    shown: list[dict[str, Any]] = []
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # instead of waiting: the controller writes
        polls.append(seconds)
        with log.open("a") as file:
            if len(polls) == 1:
                file.write(json.dumps({**sealed(7), "policy": "api-cpu"})[:40])
            elif len(polls) == 2:
                file.write(json.dumps({**sealed(7), "policy": "api-cpu"})[40:] + "\n")

    tail = Tail(log, on_bad=pytest.fail)
    keep = RecordFilter(policy="api-cpu")
    count = follow(tail, keep, shown.append, stopped=lambda: len(polls) >= 3, sleep=sleep)
    assert [r["seq"] for r in shown] == [1, 2, 3, 4, 6, 7]
    assert count == 6 and polls == [0.25, 0.25, 0.25]


def test_follow_starts_over_when_the_file_is_replaced(tmp_path: Path) -> None:
    """A log moved aside and started again: the new file is read from its start."""
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps(sealed(1)) + "\n" + json.dumps(sealed(2)) + "\n")
    tail = Tail(path, on_bad=pytest.fail)
    assert [r["seq"] for r in tail.read()] == [1, 2]
    path.write_text(json.dumps(sealed(1, reason="new")) + "\n")
    assert [r["reason"] for r in tail.read()] == ["new"]


def test_follow_waits_for_a_log_not_yet_written(tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    tail = Tail(path, on_bad=pytest.fail)
    shown: list[dict[str, Any]] = []

    def sleep(_: float) -> None:
        path.write_text(json.dumps(sealed(1)) + "\n")

    follow(tail, RecordFilter(), shown.append, stopped=lambda: bool(shown), sleep=sleep)
    assert [r["seq"] for r in shown] == [1]


def sealed(seq: int, **changes: Any) -> dict[str, Any]:
    return {**record(seq).model_dump(mode="json"), "seq": seq, **changes}


def test_audit_line_of_a_record_without_optional_fields() -> None:
    line = audit_line({"ts": "not a time", "policy": "p", "reason": "r"})
    assert line.split() == ["#?", "not", "a", "time", "decision", "p", "-", "-", "-", "-", "r"]
