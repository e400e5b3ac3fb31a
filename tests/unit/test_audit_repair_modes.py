"""`audit repair` on keyed and anchored logs, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.audit.log import AuditKeyError, AuditLog, check_file
from controller.audit.repair import repair
from tests.unit.test_audit_chain import record
from tests.unit.test_audit_tamper_modes import KEY, edit_and_rehash, make_log, rows


@pytest.mark.parametrize("mode", ["keyed", "anchored"])
def test_a_re_hashed_log_is_repaired_and_carries_on(tmp_path: Path, mode: str) -> None:
    """Found at line 3 (by the key, or by the anchor): the repair keeps lines 1-2, sets
    3-6 aside, voids the anchor's record of them, and the log verifies and grows again."""
    log = make_log(tmp_path, mode)
    edit_and_rehash(log)
    broken = rows(log)
    done = repair(log.path, key=log.key, anchor=log.anchor, by="test")
    assert done is not None and (done.kept, done.first_bad, done.moved_lines) == (2, 3, 4)
    assert done.moved_to is not None and done.moved_to.read_text() == "".join(broken[2:])
    check = check_file(log.path, key=log.key, anchor=log.anchor, keep=True)
    assert check.trusted and check.lines == 3 and check.records[-1]["kind"] == "repair"
    with AuditLog(log.path, key=log.key, anchor=log.anchor) as audit:
        assert audit.append(record(9)) == 4
    assert check_file(log.path, key=log.key, anchor=log.anchor).trusted
    assert repair(log.path, key=log.key, anchor=log.anchor) is None  # nothing left to do


def test_a_repair_needs_the_right_key(tmp_path: Path) -> None:
    """Without the key, or with another, a keyed log is not repaired (a wrong key would
    make every line look bad): nothing is moved."""
    log = make_log(tmp_path, "keyed")
    before = log.path.read_bytes()
    with pytest.raises(AuditKeyError, match="keyed"):
        repair(log.path)
    with pytest.raises(AuditKeyError, match="is this the key"):
        repair(log.path, key=KEY[::-1])
    assert log.path.read_bytes() == before
    assert list(log.path.parent.glob("*.broken-*")) == []
