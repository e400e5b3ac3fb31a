"""What each mode of the audit log detects: the table in docs/safety.md, row by row.

The attacker can rewrite the log's folder (the log and its head) and knows SHA-256, but
holds neither the key nor write access to the anchor's storage. Each row is one kind of
tampering; each mode's cell is what verification finds: the first bad line, the log
whole but unguarded (a controller refuses to start on it), or nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.audit.chain import line_hash
from controller.audit.log import (
    AuditCorrupt,
    AuditKeyError,
    AuditLog,
    check_file,
    head_path,
    write_head,
)
from controller.cli import main
from tests.unit.test_audit_chain import record

KEY = b"0123456789abcdef0123456789abcdef"
MISSED, UNGUARDED, VOUCHED = "missed", "unguarded", "vouched"


@dataclass
class Log:
    path: Path
    key: bytes | None
    anchor: Path | None
    old_head: str  # the head as it was after line 4: what an attacker could have copied


def make_log(tmp_path: Path, mode: str) -> Log:
    path = tmp_path / "log" / "audit.jsonl"
    key = KEY if mode == "keyed" else None
    anchor = tmp_path / "other-storage" / "audit.anchor" if mode == "anchored" else None
    with AuditLog(path, key=key, anchor=anchor) as audit:
        for i in range(4):
            audit.append(record(i))
        old_head = head_path(path).read_text()
        for i in range(4, 6):
            audit.append(record(i))
    return Log(path, key, anchor, old_head)


def rows(log: Log) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def reseal(lines: list[str], start: int) -> list[str]:
    """Re-hash lines from ``start`` (0-based) on, as anyone without the key can."""
    prev = json.loads(lines[start - 1])["hash"] if start else "0" * 64
    out = lines[:start]
    for raw in lines[start:]:
        fields = json.loads(raw)
        fields["prev"] = prev
        fields["hash"] = prev = line_hash(fields)
        out.append(json.dumps(fields) + "\n")
    return out


def rewrite(log: Log, lines: list[str], head: bool = True) -> None:
    log.path.write_text("".join(lines))
    if head:
        last = json.loads(lines[-1])
        write_head(log.path, last["seq"], last["hash"])


def edit(log: Log) -> None:
    lines = rows(log)
    lines[2] = lines[2].replace('"cooldown 2"', '"cooldown 9"')
    log.path.write_text("".join(lines))


def edit_and_rehash(log: Log) -> None:
    lines = rows(log)
    lines[2] = lines[2].replace('"cooldown 2"', '"cooldown 9"')
    rewrite(log, reseal(lines, 2))


def delete_a_middle_line(log: Log) -> None:
    lines = rows(log)
    del lines[2]
    log.path.write_text("".join(lines))


def cut_the_end(log: Log) -> None:
    log.path.write_text("".join(rows(log)[:4]))


def cut_the_end_and_delete_the_head(log: Log) -> None:
    cut_the_end(log)
    head_path(log.path).unlink()


def cut_the_end_and_corrupt_the_head(log: Log) -> None:
    cut_the_end(log)
    head_path(log.path).write_text("{")


def cut_the_end_and_rewrite_the_head(log: Log) -> None:
    rewrite(log, rows(log)[:4])


def cut_the_end_and_put_back_an_old_head(log: Log) -> None:
    cut_the_end(log)
    head_path(log.path).write_text(log.old_head)


def delete_the_head(log: Log) -> None:
    head_path(log.path).unlink()


def replace_the_whole_log(log: Log) -> None:
    forged = log.path.with_name("forged.jsonl")
    with AuditLog(forged) as audit:
        for i in range(6):
            audit.append(record(i, reason=f"forged {i}"))
    shutil.copy(forged, log.path)
    shutil.copy(head_path(forged), head_path(log.path))


Tamper = Callable[[Log], None]
# (tampering, what the unkeyed, keyed and anchored logs show): a line number, or a word
TABLE: list[tuple[Tamper, int | str, int | str, int | str]] = [
    (edit, 3, 3, 3),
    (edit_and_rehash, MISSED, 3, 3),
    (delete_a_middle_line, 3, 3, 3),
    (cut_the_end, 5, 5, 5),
    (cut_the_end_and_delete_the_head, UNGUARDED, UNGUARDED, 5),
    (cut_the_end_and_corrupt_the_head, UNGUARDED, UNGUARDED, 5),
    (cut_the_end_and_rewrite_the_head, MISSED, UNGUARDED, 5),
    (cut_the_end_and_put_back_an_old_head, MISSED, MISSED, 5),
    (delete_the_head, UNGUARDED, UNGUARDED, VOUCHED),
    (replace_the_whole_log, MISSED, UNGUARDED, 1),
]
CASES = [
    pytest.param(tamper, mode, found, id=f"{tamper.__name__}-{mode}")
    for tamper, *cells in TABLE
    for mode, found in zip(("unkeyed", "keyed", "anchored"), cells, strict=True)
]


@pytest.mark.parametrize(("tamper", "mode", "found"), CASES)
def test_what_each_mode_detects(
    tmp_path: Path, tamper: Tamper, mode: str, found: int | str
) -> None:
    """Verification finds what the table says; a controller refuses to start on anything
    found, and starts on what is missed (or what the anchor vouches for)."""
    log = make_log(tmp_path, mode)
    assert check_file(log.path, key=log.key, anchor=log.anchor).trusted
    tamper(log)
    check = check_file(log.path, key=log.key, anchor=log.anchor)
    if isinstance(found, int):
        assert (check.first_bad, check.ok) == (found, False), check.problem
    elif found == UNGUARDED:
        assert check.ok and check.unguarded is not None
    else:
        assert check.trusted, check.problem
    writer = AuditLog(log.path, key=log.key, anchor=log.anchor)
    if found in (MISSED, VOUCHED):
        writer.open()
        writer.close()
    else:
        with pytest.raises(AuditCorrupt):
            writer.open()


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_lines_cut_with_the_head_deleted_are_never_silent(
    tmp_path: Path, cut: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unkeyed log, its last 1..5 lines cut and its head deleted: `audit verify` exits
    1 with a warning naming the head, and a controller refuses to start on it."""
    log = make_log(tmp_path, "unkeyed")
    log.path.write_text("".join(rows(log)[:-cut]))
    head_path(log.path).unlink()
    assert main(["audit", "verify", str(log.path)]) == 1
    err = capsys.readouterr().err
    assert "WARNING" in err and f"{head_path(log.path)} is missing" in err
    with pytest.raises(AuditCorrupt, match="missing"):
        AuditLog(log.path).open()


def test_verify_with_the_key_finds_re_hashing_and_without_it_says_what_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A keyed log edited and re-hashed: with REMEDIATOR_AUDIT_KEY (or --key-file) verify
    names line 3; without a key it checks the chain's shape only, and says so."""
    log = make_log(tmp_path, "keyed")
    edit_and_rehash(log)
    keep_mac = rows(log)  # the forger kept the "mac" fields, to look keyed
    assert all('"mac": "hmac-sha256"' in line for line in keep_mac)
    assert main(["audit", "verify", str(log.path)]) == 0
    assert "shape only" in capsys.readouterr().out
    monkeypatch.setenv("REMEDIATOR_AUDIT_KEY", KEY.decode())
    assert main(["audit", "verify", str(log.path)]) == 1
    assert capsys.readouterr().err.startswith(f"{log.path}:3: MAC does not match")
    monkeypatch.delenv("REMEDIATOR_AUDIT_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(KEY.decode() + "\n")
    assert main(["audit", "verify", str(log.path), "--key-file", str(key_file)]) == 1


def test_a_log_does_not_mix_modes_silently(tmp_path: Path) -> None:
    """A keyed log will not open without its key (nor take unkeyed lines); an unkeyed
    log with lines will not open with a key until a repair seals it, on the record."""
    keyed = make_log(tmp_path / "a", "keyed")
    with pytest.raises(AuditKeyError, match="REMEDIATOR_AUDIT_KEY"):
        AuditLog(keyed.path).open()
    lines = rows(keyed)
    fields = json.loads(lines[-1])
    fields.pop("mac")
    fields.update(seq=7, prev=fields["hash"])
    fields["hash"] = line_hash(fields)
    keyed.path.write_text("".join(lines) + json.dumps(fields) + "\n")
    check = check_file(keyed.path, key=KEY)
    assert check.first_bad == 7 and "unkeyed line after keyed ones" in str(check.problem)

    plain = make_log(tmp_path / "b", "unkeyed")
    with pytest.raises(AuditCorrupt, match="no line is sealed with it"):
        AuditLog(plain.path, key=KEY).open()
    assert main(["audit", "repair", str(plain.path), "--key-file", str(write_key(tmp_path))]) == 0
    check = check_file(plain.path, key=KEY)
    assert check.trusted and check.keyed_from == 7 and check.macs_checked
    with AuditLog(plain.path, key=KEY) as audit:
        assert audit.append(record(7)) == 8
    assert check_file(plain.path, key=KEY).trusted


def write_key(folder: Path) -> Path:
    path = folder / "audit.key"
    path.write_text(KEY.decode())
    return path
