"""Audit rotation: a start reads the snapshot and the tail, and rebuilds the same memory as
a replay of the whole history."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.audit.log import AuditLog, AuditUnavailable, check_file, read_records
from controller.audit.replay import Replayed, replay
from controller.audit.rotation import Rotation, next_path, rotated, series
from controller.audit.show import Tail
from controller.audit.snapshot import Retention
from controller.cli import main
from controller.config import BudgetSettings, FailStaticSettings
from controller.core.budget import window_count
from controller.fleet import Fleet
from controller.fleet_memory import rebuild_fleet
from controller.memory import TargetMemory
from controller.model import ActionRecord
from tests.audit_history import ACTIONS, KINDS, STATES, Writer, target
from tests.conftest import START

POLICIES = 4
BUDGETS = BudgetSettings(subscription_burst=3, subscription_per_hour=1, global_per_hour=5)
RETENTION = Retention(timedelta(hours=3), BUDGETS.subscription_burst, BUDGETS.subscription_per_hour)
ROTATION = Rotation(max_bytes=4096, max_age=timedelta(hours=6), retention=RETENTION)

OPS = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 5, 30, 240]),
        st.integers(0, POLICIES - 1),
        st.sampled_from(KINDS),
        st.integers(0, 29),
        st.tuples(st.sampled_from(STATES), st.sampled_from(STATES)),
    ),
    min_size=1,
    max_size=120,
)


def write(path: Path, ops: list[tuple[Any, ...]], rotation: Rotation = ROTATION) -> datetime:
    with AuditLog(path, rotation=rotation) as audit:
        writer = Writer(audit, START)
        for op in ops:
            writer.op(op)
    return writer.now


def whole_history(path: Path) -> Replayed:
    """Every line of every file, the snapshots left out: the memory without rotation."""
    return replay(r for f in series(path) for r in read_records(f) if r["kind"] != "snapshot")


def is_subsequence(part: list[ActionRecord], whole: list[ActionRecord]) -> bool:
    rest = iter(whole)
    return all(any(item == other for other in rest) for item in part)


def assert_same_memory(whole: Replayed, rebuilt: Replayed, now: datetime) -> None:
    """Field by field; the action history may lose only what nothing counts any more."""
    assert rebuilt.open_intents == whole.open_intents
    assert rebuilt.fail_static == whole.fail_static
    assert rebuilt.memories.keys() == whole.memories.keys()
    for name, memory in whole.memories.items():
        again = rebuilt.memories[name]
        for item in dataclasses.fields(TargetMemory):
            if item.name != "history":
                assert getattr(again, item.name) == getattr(memory, item.name), (name, item.name)
        assert is_subsequence(again.history, memory.history)
        for action in (*ACTIONS, None):
            kept = [r.ts for r in again.history if action in (None, r.action)]
            every = [r.ts for r in memory.history if action in (None, r.action)]
            assert max(kept, default=None) == max(every, default=None)  # cooldowns
            for window in (timedelta(hours=1), RETENTION.keep):  # budgets
                for at in (now, now + timedelta(minutes=30)):
                    assert window_count(kept, at, window) == window_count(every, at, window)
    owners = {f"p{i}": target(i).split("/")[2] for i in range(POLICIES)}
    fleets = []
    for memory in (whole, rebuilt):
        fleet = Fleet(BUDGETS, FailStaticSettings(), POLICIES)
        rebuild_fleet(fleet, memory)
        fleets.append(fleet)
    for subscription in set(owners.values()):
        for later in (0, 20, 60, 180):
            at = now + timedelta(minutes=later)
            assert fleets[0].remaining(subscription, at) == fleets[1].remaining(subscription, at)
            whole_bucket, bucket = (f._bucket(subscription).refilled(at) for f in fleets)
            assert bucket.tokens == whole_bucket.tokens
            assert fleets[0].holds(subscription, at) == fleets[1].holds(subscription, at)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(OPS)
def test_snapshot_and_tail_rebuild_the_memory_of_the_whole_history(
    ops: list[tuple[Any, ...]],
) -> None:
    """For random histories of every kind of line over 4 targets (rotating every 4 KiB or
    6 h): the memory a start rebuilds from the active file alone equals the replay of
    every line ever written — memories, open intents, fail static, and the budgets the
    fleet rebuilds."""
    with TemporaryDirectory() as directory:
        path = Path(directory) / "audit.jsonl"
        now = write(path, ops)
        with AuditLog(path, rotation=ROTATION) as reopened:
            rebuilt = reopened.memory()
            assert reopened.lines == len(list(read_records(path)))  # the active file alone
        assert_same_memory(whole_history(path), rebuilt, now)
        assert main(["audit", "verify", "--series", str(path)]) == 0


# a quiet week (an action now and then: the buckets refill), then a busy day (more
# actions than the buckets refill, for longer than the actions kept), every line kind
QUIET = [
    (60, i % POLICIES, "would-run" if i % 8 == 0 else "verdict", i % 30, ("ok", "ok"))
    for i in range(160)
]
LONG = QUIET + [
    (
        10,
        i % POLICIES,
        "would-run" if i % 2 else KINDS[i * 7 % len(KINDS)],
        i % 30,
        (STATES[i % 4], "ok"),
    )
    for i in range(160)
]


def test_a_long_history_rebuilds_the_same_memory(tmp_path: Path) -> None:
    """A quiet week then a busy day, dozens of rotations: the subscriptions' token buckets
    stay below full for longer than the 3 h of actions kept, and still come back exactly."""
    path = tmp_path / "audit.jsonl"
    now = write(path, LONG)
    with AuditLog(path, rotation=ROTATION) as reopened:
        rebuilt = reopened.memory()
    whole = whole_history(path)
    assert sum(len(m.history) for m in rebuilt.memories.values()) < sum(
        len(m.history) for m in whole.memories.values()
    )
    assert_same_memory(whole, rebuilt, now)


@pytest.fixture
def rotated_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write(path, LONG)
    return path


def test_the_log_rotates_and_the_chain_runs_on_across_files(rotated_log: Path) -> None:
    """Rotated files are numbered in order; each new file starts with a snapshot whose
    prev is the last hash of the file before it and whose seq follows on."""
    files = series(rotated_log)
    assert len(files) > 10 and files[-1] == rotated_log
    for before, after in itertools.pairwise(files):
        last = list(read_records(before))[-1]
        first = next(read_records(after))
        assert first["kind"] == "snapshot" and first["rotated_from"] == rotated_log.name
        assert (first["seq"], first["prev"]) == (last["seq"] + 1, last["hash"])
        assert check_file(after).ok


def test_append_returns_the_seq_of_its_line_when_a_snapshot_follows(tmp_path: Path) -> None:
    """A result names its intent by the seq append returned: a rotation right after the
    intent must not hand back the snapshot's."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, rotation=ROTATION) as audit:
        writer = Writer(audit, START)
        returned = [writer.line(i % POLICIES, "verdict", ("ok", "ok")) for i in range(30)]
    by_seq = {r["seq"]: r for f in series(path) for r in read_records(f)}
    assert len(rotated(path)) >= 5
    assert [by_seq[seq]["reconcile_id"] for seq in returned] == [f"r{i}" for i in range(30)]


def test_verify_checks_one_file_or_the_whole_series(
    rotated_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit verify FILE` checks that file alone (a rotated one too); `--series` also
    checks each link: a removed middle file is named."""
    files = rotated(rotated_log)
    assert main(["audit", "verify", str(files[3])]) == 0
    assert main(["audit", "verify", "--series", str(rotated_log)]) == 0
    assert f"{len(files) + 1} files" in capsys.readouterr().out
    files[3].unlink()
    assert main(["audit", "verify", "--series", str(rotated_log)]) == 1
    assert capsys.readouterr().err.startswith(f"{files[4]}:1: ")


def test_show_and_report_read_rotated_files(
    rotated_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit show` takes a rotated file; `report --audit` takes several, in order."""
    files = rotated(rotated_log)
    assert main(["audit", "show", str(files[2]), "--output", "json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown[0]["kind"] == "snapshot" and len(shown) == len(list(read_records(files[2])))
    assert main(["audit", "show", str(rotated_log), "--kind", "snapshot"]) == 0
    assert capsys.readouterr().out.count("snapshot") == 1
    report = tmp_path / "report.html"
    args = ["report", "--audit", *map(str, files[:3]), "--report", str(report)]
    assert main(args) == 0 and report.exists()


class Crash(BaseException):
    """The process dies here."""


def test_an_interrupted_rotation_is_finished_or_dropped(
    rotated_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash while the new file is written leaves the old one active; a crash between
    the two renames is finished at the next open. Either way the memory is whole."""
    with AuditLog(rotated_log, rotation=ROTATION) as audit:
        before = audit.memory()
    fresh = next_path(rotated_log)
    fresh.write_text('{"half a snapshot')
    with AuditLog(rotated_log, rotation=ROTATION) as audit:
        assert not fresh.exists() and audit.memory() == before
    real = os.replace

    def dies_before_the_new_file_is_in_place(source: Path, target: Path) -> None:
        if Path(source) == fresh:
            raise Crash
        real(source, target)

    monkeypatch.setattr(
        "controller.audit.rotation.os.replace", dies_before_the_new_file_is_in_place
    )
    files = len(rotated(rotated_log))
    with pytest.raises(Crash), AuditLog(rotated_log, rotation=ROTATION) as audit:
        writer = Writer(audit, START + timedelta(days=30))
        for i in range(20):
            writer.op((1, i % POLICIES, "would-run", i, ("breach", "ok")))
    crashed = audit.memory()  # what it held when it died: the snapshot's content
    assert not rotated_log.exists() and fresh.exists() and len(rotated(rotated_log)) == files + 1
    monkeypatch.undo()
    with AuditLog(rotated_log, rotation=ROTATION) as audit:
        assert rotated_log.exists() and not fresh.exists()
        assert audit.lines == 1  # the snapshot alone
        assert audit.memory() == crashed
    assert main(["audit", "verify", "--series", str(rotated_log)]) == 0


def test_following_carries_on_across_a_rotation(tmp_path: Path) -> None:
    """`audit show --follow` reads the rest of the rotated file, then the new one."""
    path = tmp_path / "audit.jsonl"
    tail = Tail(path, on_bad=pytest.fail)
    seen = []
    with AuditLog(path, rotation=ROTATION) as audit:
        writer = Writer(audit, START)
        for i in range(40):
            writer.op((1, i % POLICIES, "verdict", i, ("breach", "ok")))
            if i % 2:
                seen += tail.read()
    seen += tail.read()
    assert len(rotated(path)) >= 5
    assert [r["seq"] for r in seen] == list(range(1, seen[-1]["seq"] + 1))


def test_a_file_that_cannot_be_reopened_after_rotation_is_told_not_raised_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rotation is done but the new active file cannot be opened (out of file
    descriptors): the line just written stands (AuditUnavailable, ``written``), the next
    write opens it again, and the chain runs on unbroken."""
    path = tmp_path / "audit.jsonl"
    real_open = Path.open
    failing = [0]

    def flaky_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self == path and mode == "a" and failing[0] > 0:
            failing[0] -= 1
            raise OSError(24, "Too many open files")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", flaky_open)
    with AuditLog(path, rotation=ROTATION) as audit:
        writer = Writer(audit, START)
        failing[0] = 1  # the first reopen after a rotation fails
        refused = []
        for i in range(30):
            try:
                writer.line(i % POLICIES, "verdict", ("ok", "ok"))
            except AuditUnavailable as exc:
                refused.append(exc.written)
    assert refused == [True]  # told once; the line before the failed reopen stands
    assert len(rotated(path)) >= 2
    for f in series(path):
        assert check_file(f).ok
    written = [r["reconcile_id"] for f in series(path) for r in read_records(f)]
    assert [r for r in written if r is not None] == [f"r{i}" for i in range(30)]
