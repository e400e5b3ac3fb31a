"""One writer per audit log: a second is refused at once and appends nothing."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from controller.audit.lock import AuditLocked
from controller.audit.log import AuditLog, AuditUnavailable, check_file
from controller.cli import main
from tests.unit.test_audit_chain import record


def test_a_second_writer_is_refused_at_once(tmp_path: Path) -> None:
    """While one AuditLog holds the file, opening another on it raises AuditLocked naming
    the file, the lock and the holder's pid; it cannot append; the first writes on."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as first:
        first.append(record(0))
        before = path.read_bytes()
        second = AuditLog(path)
        with pytest.raises(AuditLocked) as refused:
            second.open()
        message = str(refused.value)
        assert str(path) in message and f"{path}.lock" in message
        assert f"pid {os.getpid()}" in message
        with pytest.raises(AuditUnavailable):
            second.append(record(1))
        assert path.read_bytes() == before
        assert first.append(record(1)) == 2
    check = check_file(path)
    assert check.ok and check.lines == 2
    with AuditLog(path) as third:  # the lock goes with its holder
        assert third.lines == 2


def test_readers_need_no_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit verify` and `audit show` read a log its writer holds; `audit repair` (a
    writer) is refused, naming the lock."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as writer:
        writer.append(record(0))
        assert main(["audit", "verify", str(path)]) == 0
        assert main(["audit", "show", str(path)]) == 0
        capsys.readouterr()
        assert main(["audit", "repair", str(path)]) == 1
        assert f"{path}.lock" in capsys.readouterr().err


def test_a_file_system_that_cannot_lock_is_named_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock fails outright (ENOLCK on some network shares) the log still opens,
    and says that one writer per file is now the operator's job."""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit:
        assert any("cannot lock" in note and "operator's job" in note for note in audit.notes)
        assert audit.append(record(0)) == 1
