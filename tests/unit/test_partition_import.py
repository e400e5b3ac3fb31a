"""Switching to shards: a new partition log starts with its share of the single log.

The single process's log (``tests/shards/single_log.py``) holds actions of the hour, an
open breaker, an intent without a result and fail static. Each partition log opened
with ``importFrom`` starts with one snapshot line holding the memory of its own targets
and naming the source (path, last seq, last hash); the source is never written; a log
is seeded once; a source that cannot be trusted, or whose writer still runs, keeps the
partition waiting rather than starting it with no memory.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.audit import migrate
from controller.audit.chain import Verification
from controller.audit.lock import WriterLock
from controller.audit.log import AuditLog, check_file, read_records
from controller.audit.migrate import IMPORTED_FROM, Importer, ImportRefused
from controller.audit.partitions import PartitionLogs, partition_log
from controller.config import SettingsError, load_settings
from controller.core.breaker import BreakerState
from controller.shards import partition_of
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


def logs_for(directory: Path, source: Path, key: bytes | None = None) -> PartitionLogs:
    importer = Importer(source, key, PARTITIONS, partition_of, lambda: START + timedelta(minutes=8))
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
