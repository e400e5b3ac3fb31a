"""The audit chain: any edit, deletion, insertion or reordering is found and named."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.log import AuditCorrupt, AuditLog, Record, check_file, read_records
from controller.cli import main
from tests.conftest import APP_ID, START


def record(i: int, **changes: object) -> Record:
    fields = {
        "ts": START + timedelta(minutes=i),
        "policy": "api-cpu",
        "target": APP_ID,
        "verdict": "breach",
        "verdicts": [{"objective": "cpu", "state": "breach", "value": 90.0 + i}],
        "action": "scaleOut",
        "params": {"minReplicas": i + 1},
        "decision": "deny",
        "reason": f"cooldown {i}",
        "mode": "live",
        "outcome": None,
        "before": {},
        "after": {},
        "reconcile_id": f"r{i}",
        **changes,
    }
    return Record.model_validate(fields)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit:
        for i in range(6):
            assert audit.append(record(i)) == i + 1
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_an_untouched_log_verifies(log: Path) -> None:
    """Six sealed lines, in order, verify; each names its predecessor."""
    check = check_file(log)
    assert check.ok and check.lines == 6
    parsed = [json.loads(line) for line in lines(log)]
    assert [p["seq"] for p in parsed] == [1, 2, 3, 4, 5, 6]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(parsed))


def tamper_edit(rows: list[str]) -> list[str]:
    rows[2] = rows[2].replace('"cooldown 2"', '"cooldown 9"')
    return rows


def tamper_delete(rows: list[str]) -> list[str]:
    del rows[2]
    return rows


def tamper_insert(rows: list[str]) -> list[str]:
    rows.insert(2, rows[1])
    return rows


def tamper_reorder(rows: list[str]) -> list[str]:
    rows[2], rows[3] = rows[3], rows[2]
    return rows


def tamper_truncate(rows: list[str]) -> list[str]:
    return rows[:-1]


def tamper_value_only(rows: list[str]) -> list[str]:
    fields = json.loads(rows[4])
    fields["params"]["minReplicas"] = 99
    rows[4] = json.dumps(fields) + "\n"
    return rows


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        (tamper_edit, 3),  # any changed byte of content breaks that line's hash
        (tamper_value_only, 5),  # re-serialised with a new value: still caught
        (tamper_delete, 3),  # the next line's seq and prev no longer follow
        (tamper_insert, 3),  # a copied line repeats a seq
        (tamper_reorder, 3),  # swapped lines break seq at the first of them
        (tamper_truncate, 6),  # the last line removed: the head file still names it
    ],
)
def test_tampering_is_found_at_the_first_bad_line(
    log: Path, tamper: object, first_bad: int
) -> None:
    """verify names the first line that does not fit the chain."""
    log.write_text("".join(tamper(lines(log))))  # type: ignore[operator]
    check = check_file(log)
    assert not check.ok and check.first_bad == first_bad


def test_audit_verify_command(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`remediator audit verify` exits 0 on a good log, non-zero naming FILE:LINE on a bad one."""
    assert main(["audit", "verify", str(log)]) == 0
    assert "ok: 6 lines" in capsys.readouterr().out
    log.write_text("".join(tamper_edit(lines(log))))
    assert main(["audit", "verify", str(log)]) == 1
    assert capsys.readouterr().err.startswith(f"{log}:3: hash does not match")


def test_a_torn_last_line_is_set_aside_not_lost(log: Path) -> None:
    """A crash mid-write leaves a partial line: it moves to .torn and the chain carries on."""
    with log.open("a") as file:
        file.write('{"ts": "2026-01-01T00:10:00Z", "kind": "inte')
    assert check_file(log).torn is not None
    with AuditLog(log) as audit:
        assert audit.torn_to is not None
        assert audit.torn_to.read_text().startswith('{"ts": "2026-01-01T00:10:00Z"')
        assert audit.append(record(7)) == 7
    assert check_file(log).ok and check_file(log).lines == 7


def test_a_line_still_being_written_is_not_read_as_a_record(log: Path) -> None:
    """A reader beside a live writer (``audit show``, a probe) sees only whole lines."""
    whole = len(list(read_records(log)))
    with log.open("a") as file:
        file.write('{"ts": "2026-01-01T00:10:00Z", "kind": "inte')
    assert len(list(read_records(log))) == whole


def test_a_broken_chain_refuses_to_open(log: Path) -> None:
    """The controller will not take its memory from a tampered log."""
    log.write_text("".join(tamper_delete(lines(log))))
    with pytest.raises(AuditCorrupt, match=r"audit\.jsonl:3: audit chain broken"):
        AuditLog(log).open()


def test_reopening_continues_the_chain(log: Path) -> None:
    """A restart appends after the last line, keeping seq and prev continuous."""
    with AuditLog(log) as audit:
        assert audit.lines == 6
        audit.append(record(6))
    assert check_file(log).lines == 7
