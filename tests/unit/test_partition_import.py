"""Switching to shards: a new partition log starts with its share of the single log.

The single process's log (``tests/shards/single_log.py``) holds actions of the hour, an
open breaker, an intent without a result and fail static. Each partition log opened
with ``importFrom`` starts with one snapshot line holding the memory of its own targets
and naming the source (path, last seq, last hash); the source is never written; a log
is seeded once; a source that cannot be trusted, or whose writer still runs, keeps the
partition waiting rather than starting it with no memory.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.audit import migrate
from controller.audit.chain import Verification
from controller.audit.lock import AuditLocked, WriterLock, lock_path
from controller.audit.log import AuditLog, MemoryAudit, check_file, read_records, write_head
from controller.audit.migrate import IMPORTED_FROM, MARKER, Importer, ImportRefused
from controller.audit.partitions import PartitionLogs, partition_log
from controller.azure.credentials import EmulatorCredential
from controller.clock import VirtualClock
from controller.config import SettingsError, load_settings
from controller.core.breaker import BreakerState
from controller.loop import Loop
from controller.readiness import Readiness
from controller.registry import Registry
from controller.runtime import Runtime
from controller.settings_view import settings_view
from controller.shards import partition_of
from controller.telemetry import Metrics
from tests.conftest import START
from tests.shards.single_log import (
    BREAKER_APP,
    INTENT_APP,
    SPENT_APPS,
    SingleLog,
    key_of,
    line,
    write_single_log,
)

PARTITIONS = 2
KEY = b"k" * 32


def logs_for(
    directory: Path, source: Path, key: bytes | None = None, anchor: Path | None = None
) -> PartitionLogs:
    held = {"anchor": anchor} if anchor is not None else {}  # the source's auditAnchor
    now = START + timedelta(minutes=8)
    importer = Importer(source, key, PARTITIONS, partition_of, lambda: now, **held)
    return PartitionLogs(directory, "replica-a", lambda p: AuditLog(p, key=key), None, importer)


def fingerprint(path: Path) -> str:
    """The source's bytes and its head's: what the import must leave as they were."""
    head = path.with_name(path.name + ".head")
    return hashlib.sha256(path.read_bytes() + head.read_bytes()).hexdigest()


@pytest.fixture
def single(tmp_path: Path) -> SingleLog:
    return write_single_log(tmp_path / "single" / "audit.jsonl", START)


def test_each_partition_starts_with_its_share_of_the_single_logs_memory(
    tmp_path: Path, single: SingleLog
) -> None:
    before = fingerprint(single.path)
    source = check_file(single.path)
    logs = logs_for(tmp_path / "partitions", single.path)
    zero, one = logs.open(0), logs.open(1)
    assert zero is not None and one is not None
    # partition 0: the breaker's app and two spent apps; partition 1: the open intent's
    assert set(zero.memories) == {key_of(BREAKER_APP), key_of(SPENT_APPS[1]), key_of(SPENT_APPS[2])}
    assert set(one.memories) == {key_of(INTENT_APP), key_of(SPENT_APPS[0])}
    # the open breaker holds, its three failures count as actions of the hour
    breaker = zero.memories[key_of(BREAKER_APP)].breakers["scaleOut"]
    assert breaker.state(START + timedelta(minutes=8), timedelta(hours=1)) is BreakerState.OPEN
    assert breaker.opened_at == single.opened_at
    assert len(zero.memories[key_of(BREAKER_APP)].history) == 3
    # the intent without a result goes to be settled, as the source's line it is
    [intent] = one.open_intents[key_of(INTENT_APP)]
    assert intent["seq"] == single.intent_seq and intent["kind"] == "intent"
    assert zero.open_intents == {}
    # fail static is the replica's, not a partition's
    assert zero.fail_static is None and one.fail_static is None
    assert logs.imported == {0: 3, 1: 2}
    for partition in (0, 1):
        path = partition_log(logs.directory, partition)
        [seed] = list(read_records(path))
        assert seed["kind"] == "snapshot" and seed["seq"] == 1 and seed["replica"] == "replica-a"
        assert seed[IMPORTED_FROM] == {
            "path": str(single.path),
            "seq": source.last_seq,
            "hash": source.last_hash,
            "partition": partition,
            "partitions": PARTITIONS,
        }
        assert f"up to its line {source.last_seq}" in seed["reason"]
        assert check_file(path).trusted
    logs.close_all()
    assert fingerprint(single.path) == before  # only read


def test_a_partition_is_seeded_once_and_later_lines_follow_the_seed(
    tmp_path: Path, single: SingleLog
) -> None:
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(1) is not None
    logs.sink(1).append(
        line(
            START + timedelta(minutes=9),
            "result",
            INTENT_APP,
            outcome="succeeded",
            intent=single.intent_seq,
        )
    )
    logs.close_all()
    # the single process wrote on after (a rollback): a partition seeded is not seeded again
    with AuditLog(single.path) as source:
        source.append(line(START + timedelta(minutes=10), "intent", SPENT_APPS[0]))
    again = logs_for(tmp_path / "partitions", single.path)
    replayed = again.open(1)
    assert replayed is not None and again.imported == {}
    assert replayed.open_intents == {}  # its own result closed the imported intent
    records = list(read_records(partition_log(again.directory, 1)))
    assert [r["kind"] for r in records] == ["snapshot", "result"]
    # a partition opened for the first time now gets the source as it is now
    assert again.open(0) is not None
    [seed] = list(read_records(partition_log(again.directory, 0)))
    assert seed[IMPORTED_FROM]["seq"] == check_file(single.path).last_seq
    again.close_all()


def test_an_untrusted_source_is_refused_and_the_partition_waits(
    tmp_path: Path, single: SingleLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[Path] = []

    def counted(path: Path, **options: Any) -> Verification:
        verified.append(path)
        return check_file(path, **options)

    monkeypatch.setattr(migrate, "check_file", counted)
    good = single.path.read_bytes()
    text = good.decode().splitlines(keepends=True)
    assert '"succeeded"' in text[1]
    text[1] = text[1].replace('"succeeded"', '"failed"')  # an edited result
    single.path.write_text("".join(text))
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.importer is not None
    for partition in (0, 1, 0):  # every retry period, each partition owned
        with pytest.raises(ImportRefused, match=rf"importFrom {single.path}:2: audit chain broken"):
            logs.open(partition)
        logs.importer.forget()
    assert not logs.opened()
    assert len(verified) == 1  # not verified again until it changes
    path = partition_log(logs.directory, 0)
    assert list(read_records(path)) == []  # not started empty: nothing written
    lock = WriterLock(path)
    lock.acquire()  # let go: the next round, or another owner, tries again
    lock.release()
    single.path.write_bytes(good)  # mended (as `audit repair` would, on the record)
    assert logs.open(0) is not None and logs.imported == {0: 3}
    assert len(verified) == 2
    logs.close_all()


def test_a_source_cut_from_its_end_or_keyed_without_the_key_is_refused(
    tmp_path: Path, single: SingleLog
) -> None:
    lines = single.path.read_text().splitlines(keepends=True)
    single.path.write_text("".join(lines[:-1]))  # the open intent cut away
    with pytest.raises(ImportRefused, match="removed from the end"):
        logs_for(tmp_path / "p1", single.path).open(1)
    keyed = write_single_log(tmp_path / "keyed" / "audit.jsonl", START, key=KEY)
    with pytest.raises(ImportRefused, match="sealed with a key"):
        logs_for(tmp_path / "p2", keyed.path).open(1)
    memory = logs_for(tmp_path / "p3", keyed.path, key=KEY).open(1)  # with it: imported
    assert memory is not None and key_of(INTENT_APP) in memory.open_intents
    with pytest.raises(ImportRefused, match="no such file"):
        logs_for(tmp_path / "p4", tmp_path / "nowhere.jsonl").open(1)
    rotated = single.path.with_name(single.path.name + ".1")
    rotated.write_bytes(single.path.read_bytes())  # an older file of the series
    with pytest.raises(ImportRefused, match=r"is a rotated file: .* name the active log"):
        logs_for(tmp_path / "p5", rotated).open(1)


def test_the_import_waits_while_the_single_process_still_writes_its_log(
    tmp_path: Path, single: SingleLog
) -> None:
    """An old revision still running holds its log: every line it writes until it stops
    must be in the import (and two actors on one target never run at once)."""
    writer = AuditLog(single.path)
    writer.open()  # the single process, still running
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(1) is None
    assert "still runs" in logs.waiting[1] and str(single.path) in logs.waiting[1]
    # its last line before it stops: the result of the intent it had sent
    writer.append(
        line(
            START + timedelta(minutes=7),
            "result",
            INTENT_APP,
            outcome="succeeded",
            intent=single.intent_seq,
        )
    )
    writer.close()
    replayed = logs.open(1)
    assert replayed is not None and 1 not in logs.waiting
    assert replayed.open_intents == {}  # settled by the single process itself
    assert len(replayed.memories[key_of(INTENT_APP)].history) == 1
    logs.close_all()


def test_importing_is_set_in_shards_and_never_from_the_replicas_own_log(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        json.dumps(
            {
                "auditPath": "replica-a.jsonl",
                "shards": {
                    "enabled": True,
                    "connectionString": "x",
                    "auditDir": "partitions",
                    "importFrom": "remediator-audit.jsonl",
                },
            }
        )
    )
    shards = load_settings(settings_file, environ={}).shards
    assert shards.import_from == tmp_path / "remediator-audit.jsonl"  # beside the file
    assert load_settings(None, environ={}).shards.import_from is None
    own = {
        "auditPath": str(tmp_path / "audit.jsonl"),
        "shards": {
            "enabled": True,
            "connectionString": "x",
            "auditDir": "/a",
            "importFrom": str(tmp_path / "." / "audit.jsonl"),
        },
    }
    with pytest.raises(SettingsError, match=r"shards\.importFrom is this replica's own auditPath"):
        load_settings(None, environ={}, overrides=own)


def test_no_import_once_partitions_changed_since_the_first(
    tmp_path: Path, single: SingleLog
) -> None:
    """The switch is done: a partition new since ``partitions`` changed must not start with
    the single log's memory of targets whose memory has moved on in other logs."""
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(0) is not None
    logs.close_all()
    more = Importer(single.path, None, 4, partition_of, lambda: START + timedelta(days=30))
    later = PartitionLogs(logs.directory, "replica-a", AuditLog, None, more)
    with pytest.raises(
        ImportRefused, match=r"imported from .* with 2 partitions, and partitions is now 4"
    ):
        later.open(3)
    assert list(read_records(partition_log(logs.directory, 3))) == []


def test_a_torn_last_line_is_left_in_the_source_and_out_of_the_import(
    tmp_path: Path, single: SingleLog
) -> None:
    """A crash mid-write of the single process: the line was never acknowledged (its
    action never sent). The import leaves it out and the source as it is."""
    with single.path.open("a", encoding="utf-8") as file:
        file.write('{"ts": "2026-01-01T00:07:00Z", "kind": "intent", "policy": "api-')
    before = fingerprint(single.path)
    logs = logs_for(tmp_path / "partitions", single.path)
    replayed = logs.open(1)
    assert replayed is not None
    assert [i["seq"] for i in replayed.open_intents[key_of(INTENT_APP)]] == [single.intent_seq]
    assert logs.importer is not None and "torn last line" in logs.importer.notes[0]
    logs.close_all()
    assert fingerprint(single.path) == before
    assert not single.path.with_name(single.path.name + ".torn").exists()


class Unfenced(AuditLog):
    """A writer whose lock does not reach this host (an SMB share mounted with ``nobrl``
    elsewhere): it appends while the import holds its shared lock."""

    def lock(self) -> None:
        return None


def result_of_the_intent(single: SingleLog) -> Any:
    return line(
        START + timedelta(minutes=7),
        "result",
        INTENT_APP,
        outcome="succeeded",
        intent=single.intent_seq,
    )


def test_the_seed_is_written_under_the_sources_writer_lock(
    tmp_path: Path, single: SingleLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read, built and written under one shared lock: no writer of the source can start
    between the read and the seed."""
    found: list[str] = []
    write = AuditLog.append_fields

    def probing(log: AuditLog, fields: dict[str, Any]) -> int:
        writer = WriterLock(single.path)
        try:
            writer.acquire()
        except AuditLocked:
            found.append("fenced")
        else:
            writer.release()
            found.append("open to a writer")
        return write(log, fields)

    monkeypatch.setattr(AuditLog, "append_fields", probing)
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(0) is not None and logs.open(1) is not None
    assert found == ["fenced", "fenced"]
    logs.close_all()


def test_a_source_lock_that_cannot_be_taken_refuses_the_import_and_writes_nothing(
    tmp_path: Path, single: SingleLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_lock = os.path.realpath(lock_path(single.path))
    real = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == source_lock:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    logs = logs_for(tmp_path / "partitions", single.path)
    with pytest.raises(ImportRefused, match=r"cannot take a shared lock on .*audit\.jsonl\.lock"):
        logs.open(1)
    assert list(read_records(partition_log(logs.directory, 1))) == []
    assert not (logs.directory / MARKER).exists()


def test_lines_written_while_the_seed_is_built_are_read_again_not_dropped(
    tmp_path: Path, single: SingleLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed is written only from the source as verified: one written meanwhile (by a
    writer the lock does not fence) is verified again, and its new lines are in the seed."""
    build = migrate.snapshot_line
    built: list[int] = []

    def meanwhile(*args: Any, **options: Any) -> dict[str, Any]:
        if not built:
            with Unfenced(single.path) as writer:
                writer.append(result_of_the_intent(single))
        built.append(1)
        return build(*args, **options)

    monkeypatch.setattr(migrate, "snapshot_line", meanwhile)
    logs = logs_for(tmp_path / "partitions", single.path)
    replayed = logs.open(1)
    assert replayed is not None and len(built) == 2
    [seed] = list(read_records(partition_log(logs.directory, 1)))
    assert seed[IMPORTED_FROM]["seq"] == single.intent_seq + 1 == check_file(single.path).last_seq
    assert replayed.open_intents == {}  # the result written meanwhile is in the seed
    logs.close_all()


def test_a_source_that_changes_at_each_read_keeps_the_partition_waiting(
    tmp_path: Path, single: SingleLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = migrate.snapshot_line
    at = [START + timedelta(minutes=7)]

    def meanwhile(*args: Any, **options: Any) -> dict[str, Any]:
        at[0] += timedelta(seconds=1)
        with Unfenced(single.path) as writer:
            writer.append(line(at[0], "escalation", SPENT_APPS[0], decision=None))
        return build(*args, **options)

    monkeypatch.setattr(migrate, "snapshot_line", meanwhile)
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(1) is None  # still written: it waits, as for a writer that holds it
    assert "changed each of the 3 times it was read" in logs.waiting[1]
    assert list(read_records(partition_log(logs.directory, 1))) == []


def test_the_import_is_marked_once_and_not_done_again_from_another_source(
    tmp_path: Path, single: SingleLog
) -> None:
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(0) is not None
    marker = logs.directory / MARKER
    source = check_file(single.path)
    recorded = json.loads(marker.read_text())
    assert recorded == {
        "path": str(single.path),
        "seq": source.last_seq,
        "hash": source.last_hash,
        "partitions": PARTITIONS,
        "at": "2026-01-01T00:08:00Z",
        "partition": 0,
        "replica": "replica-a",
    }
    logs.close_all()
    # another log (another replica's, restored from elsewhere) for the partition still new
    other = write_single_log(tmp_path / "other" / "audit.jsonl", START + timedelta(seconds=1))
    elsewhere = logs_for(logs.directory, other.path)
    with pytest.raises(ImportRefused, match=rf"does not hold line {source.last_seq} .* {MARKER}"):
        elsewhere.open(1)
    assert list(read_records(partition_log(logs.directory, 1))) == []
    # the log the first partition came from, written on since (a rollback): imported
    with AuditLog(single.path) as writer:
        writer.append(result_of_the_intent(single))
    again = logs_for(logs.directory, single.path)
    assert again.open(1) is not None
    assert json.loads(marker.read_text()) == recorded  # written once
    again.close_all()


def test_the_marker_alone_refuses_another_count_of_partitions(
    tmp_path: Path, single: SingleLog
) -> None:
    logs = logs_for(tmp_path / "partitions", single.path)
    assert logs.open(0) is not None
    logs.close_all()
    for path in logs.directory.glob("partition-*"):
        path.unlink()  # the logs moved away: the marker still says what was done
    more = Importer(single.path, None, 4, partition_of, lambda: START + timedelta(days=30))
    later = PartitionLogs(logs.directory, "replica-a", AuditLog, None, more)
    with pytest.raises(
        ImportRefused,
        match=rf"{MARKER}: imported from .* with 2 partitions, and partitions is now 4",
    ):
        later.open(3)
    assert list(read_records(partition_log(logs.directory, 3))) == []


def test_a_source_held_to_its_anchor_is_refused_when_cut_from_its_end(tmp_path: Path) -> None:
    """The head beside the log is rewritten as easily as the log is cut: its anchor, on
    other storage (``shards.importAnchor``), shows the lines missing."""
    anchor = tmp_path / "anchors" / "audit.anchor"
    single = write_single_log(tmp_path / "single" / "audit.jsonl", START, anchor=anchor)
    lines = single.path.read_text().splitlines(keepends=True)
    single.path.write_text("".join(lines[:-1]))  # the open intent cut away …
    last = json.loads(lines[-2])
    write_head(single.path, last["seq"], last["hash"])  # … and the head made to match
    unheld = logs_for(tmp_path / "p0", single.path).open(1)
    assert unheld is not None and unheld.open_intents == {}  # the head alone cannot tell
    with pytest.raises(ImportRefused, match=r"removed from the end \(the anchor recorded them\)"):
        logs_for(tmp_path / "p1", single.path, anchor=anchor).open(1)
    assert list(read_records(partition_log(tmp_path / "p1", 1))) == []
    with pytest.raises(ImportRefused, match=r"importAnchor .*nowhere\.anchor: no such file"):
        logs_for(tmp_path / "p2", single.path, anchor=tmp_path / "nowhere.anchor").open(1)
    # intact, its head lost: the anchor vouches for it
    whole = write_single_log(
        tmp_path / "whole" / "audit.jsonl", START, anchor=anchor.with_suffix(".2")
    )
    whole.path.with_name("audit.jsonl.head").unlink()
    with pytest.raises(ImportRefused, match=r"\.head is missing"):
        logs_for(tmp_path / "p3", whole.path).open(1)
    held = logs_for(tmp_path / "p4", whole.path, anchor=anchor.with_suffix(".2")).open(1)
    assert held is not None and key_of(INTENT_APP) in held.open_intents


def test_import_anchor_is_a_shards_setting_beside_import_from(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    shards = {
        "enabled": True,
        "connectionString": "x",
        "auditDir": "partitions",
        "importFrom": "remediator-audit.jsonl",
        "importAnchor": "anchors/remediator-audit.anchor",
    }
    settings_file.write_text(json.dumps({"auditPath": "replica-a.jsonl", "shards": shards}))
    loaded = load_settings(settings_file, environ={}).shards
    assert loaded.import_anchor == tmp_path / "anchors" / "remediator-audit.anchor"
    view = settings_view(settings_file, environ={})  # `remediator config show`
    assert view.values["shards"]["importAnchor"] == str(loaded.import_anchor)
    assert view.origins["shards.importAnchor"] == f"{settings_file}:1"
    assert load_settings(None, environ={}).shards.import_anchor is None
    alone = {"shards": {**shards, "auditDir": "/a", "importFrom": None}}
    with pytest.raises(SettingsError, match=r"importAnchor is the anchor of the log importFrom"):
        load_settings(None, environ={}, overrides=alone)
    own = {
        "auditPath": str(tmp_path / "a.jsonl"),
        "auditAnchor": str(tmp_path / "a.anchor"),
        "shards": {**shards, "auditDir": "/a", "importAnchor": str(tmp_path / "a.anchor")},
    }
    with pytest.raises(SettingsError, match=r"importAnchor is this replica's own auditAnchor"):
        load_settings(None, environ={}, overrides=own)


def bare_runtime(logs: PartitionLogs) -> Runtime:
    """A runtime holding partition logs and nothing else: what ``_remember`` needs."""
    clock = VirtualClock(START + timedelta(minutes=8))
    metrics = Metrics()
    loop = Loop([], clock, metrics, interval=timedelta(seconds=30))
    readiness = Readiness(clock, loop, EmulatorCredential(), scope="x")
    settings = load_settings(None, environ={})
    runtime = Runtime(settings, clock, loop, metrics, MemoryAudit(), Registry(), [], readiness)
    runtime.partition_logs = logs
    return runtime


@pytest.mark.anyio
async def test_a_refusal_and_an_import_are_each_said_once_not_every_retry(
    tmp_path: Path, single: SingleLog
) -> None:
    good = single.path.read_bytes()
    text = good.decode().splitlines(keepends=True)
    single.path.write_text("".join(text[:2] + text[3:]))  # a line taken out
    logs = logs_for(tmp_path / "partitions", single.path)
    runtime = bare_runtime(logs)
    with capture_logs() as said:
        for _ in range(3):  # three retry periods
            assert runtime._remember({0, 1}) == set()
        assert set(logs.refused) == {0, 1} and logs.waiting == {}
        single.path.write_bytes(good)  # mended
        for _ in range(2):
            assert runtime._remember({0, 1}) == {0, 1}
        assert logs.refused == {}
        runtime._remember(set())  # lost: closed once their targets have ended …
        for partition in (0, 1):
            await runtime.close_lost(partition)
        assert runtime._remember({0, 1}) == {0, 1}  # … and gained again
    events = [e["event"] for e in said]
    assert events.count("partition audit log refused") == 2  # once each, for one reason
    assert events.count("partition memory imported") == 2  # once each, not on reopening
    assert events.count("partition memory replayed") == 4
    logs.close_all()
