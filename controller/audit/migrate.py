"""Switching a deployment to shards: the single log's memory, split by partition.

A controller that ran as one process keeps every target's memory in one audit log; with
shards each partition's memory is a log of its own. With ``shards.importFrom`` naming the
log the single process wrote, a partition log that holds nothing yet starts with a
``snapshot`` line (the kind rotation writes) holding that log's memory of the targets of
the partition — their actions, breakers, intents without a result, escalations sent,
approvals asked — and naming where it came from: the source's path and the seq and hash
of its last line, so the import can be checked against the source for ever after.

- **Once per partition.** Only a partition log with no line and no rotated file is
  seeded; the seed is its first line, so it is never seeded again.
- **The source is only read**, and verified as any replay is (chain, head, key). One that
  is missing, broken, unguarded or keyed without the key is refused: the partition waits
  (its targets do not run) rather than starting with no memory.
- **Its writer fenced off.** The source is read under a shared lock on its writer lock:
  while the process that wrote it still runs (an old revision not yet stopped), the
  partition waits, so no line written after the import is missed and no target has two
  actors at once.
- **Not again after** ``partitions`` **changes**: a log in the directory imported with
  another count refuses the import (the targets' memory has moved on since).
- Fail static is not imported: it is each replica's own (its ``auditPath``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.audit.lock import AuditLocked, lock_path
from controller.audit.log import AuditLog, check_file, rfc3339
from controller.audit.replay import Replayed, fold, snapshot_line
from controller.audit.rotation import rotated, series
from controller.audit.snapshot import Retention

IMPORTED_FROM = "imported_from"  # the seed line's field naming its source


class ImportRefused(Exception):
    """The source cannot be trusted (or read): the partition waits until it can."""


class SourceHeld(AuditLocked):
    """The process that wrote the source still holds it: the import waits for it to stop."""

    def __init__(self, source: Path, holder: str | None) -> None:
        self.log, self.lock, self.holder = source, lock_path(source), holder
        who = f"pid {holder}" if holder else "another process"
        Exception.__init__(
            self,
            f"shards.importFrom {source} is held by {who}: the process that wrote it "
            "before shards still runs; the partition imports its memory once it stops",
        )


@dataclass(frozen=True)
class Source:
    """The source read and verified: its memory, and its last line (what seeds name)."""

    memory: Replayed
    seq: int
    hash: str
    stamp: tuple[int, int, str]  # size, mtime and head when read: unchanged, still good
    notes: list[str] = field(default_factory=list)


class Importer:
    """Seeds new partition logs from the log the estate kept before shards."""

    def __init__(
        self,
        source: Path,
        key: bytes | None,
        partitions: int,
        partition_of: Callable[[str, int], int],
        now: Callable[[], datetime],
        retention: Retention | None = None,
    ) -> None:
        self.source = source
        self.key = key
        self.partitions = partitions
        self._partition_of = partition_of  # the shards' hash of a resource id
        self._now = now
        self.retention = retention or Retention()
        self._read: Source | None = None
        self._refused: tuple[tuple[int, int, str], str] | None = None  # stamp, why

    def wants(self, log: AuditLog) -> bool:
        """Whether ``log`` (open) is new: no line and no rotated file, nothing to lose."""
        return log.lines == 0 and not rotated(log.path)

    def seed(self, log: AuditLog, partition: int, replica: str) -> int:
        """Write the seed line into ``log`` (open, new); return how many targets it holds.
        Raises SourceHeld (wait), ImportRefused, AuditUnavailable."""
        self._same_partitions(log.path.parent)
        source = self.read()
        share = self.share(source.memory, partition)
        retention = log.rotation.retention if log.rotation is not None else self.retention
        fields = snapshot_line(share, rfc3339(self._now()), self.source.name, retention)
        fields.update(
            reason=(
                f"imported before shards: the memory of partition {partition}'s "
                f"{len(share.memories)} target(s) in {self.source} up to its line "
                f"{source.seq}"
            ),
            rotated_from=None,
            replica=replica,
        )
        fields[IMPORTED_FROM] = {
            "path": str(self.source),
            "seq": source.seq,
            "hash": source.hash,
            "partition": partition,
            "partitions": self.partitions,
        }
        log.append_fields(fields)
        return len(share.memories)

    def _same_partitions(self, directory: Path) -> None:
        """Refuse to import into a directory whose logs were imported with another count of
        partitions: its targets' memory has moved on in those logs since, and the old log
        would bring back what it held of them."""
        for path in sorted(directory.glob("partition-*.jsonl")):
            files = series(path)
            first = _first_line(files[0]) if files else None
            seeded = (first or {}).get(IMPORTED_FROM)
            if isinstance(seeded, dict) and seeded.get("partitions") != self.partitions:
                raise ImportRefused(
                    f"{path.name} was imported from {seeded.get('path')} with "
                    f"{seeded.get('partitions')} partitions, and partitions is now "
                    f"{self.partitions}: that log's memory is out of date for the partitions "
                    "new since; remove shards.importFrom (the switch to shards is done)"
                )

    def share(self, memory: Replayed, partition: int) -> Replayed:
        """The memory of the targets of ``partition`` alone (a copy); no fail static."""

        def mine(key: str) -> bool:
            resource = memory.targets.get(key) or key.partition("|")[2]
            return self._partition_of(resource, self.partitions) == partition

        return Replayed(
            memories={k: copy.deepcopy(m) for k, m in memory.memories.items() if mine(k)},
            open_intents={k: copy.deepcopy(i) for k, i in memory.open_intents.items() if mine(k)},
            fail_static=None,
            targets={k: t for k, t in memory.targets.items() if mine(k)},
            carried=[list(c) for c in memory.carried if mine(c[2])],
        )

    def read(self) -> Source:
        """The source, verified; read again only if it changed since the last read (a
        refusal too: a broken source is not verified again every retry period)."""
        if not self.source.is_file():
            raise ImportRefused(
                f"shards.importFrom {self.source}: no such file (the log the estate kept "
                "before shards); fix the path, or remove importFrom to start this partition "
                "with no memory"
            )
        active = self.source.with_name(self.source.name.rpartition(".")[0])
        if self.source.suffix[1:].isdigit() and active.is_file():
            raise ImportRefused(
                f"shards.importFrom {self.source} is a rotated file: its memory ends where "
                f"{active.name} begins; name the active log, {active}"
            )
        with _quiet(self.source):
            stamp = _stamp(self.source)
            if self._read is not None and self._read.stamp == stamp:
                return self._read
            if self._refused is not None and self._refused[0] == stamp:
                raise ImportRefused(self._refused[1])
            self._read = self._refused = None
            try:
                self._read = self._verified(stamp)
            except ImportRefused as exc:
                self._refused = (stamp, str(exc))
                raise
        return self._read

    def _verified(self, stamp: tuple[int, int, str]) -> Source:
        """Read and verify the source (its writer fenced off), or say why it is refused."""
        memory = Replayed()

        def each(fields: dict[str, Any]) -> None:
            fold(memory, fields)

        where = f"shards.importFrom {self.source}"
        try:
            check = check_file(self.source, key=self.key, each=each)
        except (OSError, ValueError) as exc:
            raise ImportRefused(f"{where}: cannot read: {exc}") from exc
        if not check.ok:
            raise ImportRefused(
                f"{where}:{check.first_bad}: audit chain broken: {check.problem}; its memory "
                "cannot be trusted, so it is not imported (`remediator audit verify` it; "
                "`audit repair` mends it, on the record)"
            )
        if check.keyed_from is not None and self.key is None:
            raise ImportRefused(
                f"{where}: lines from {check.keyed_from} on are sealed with a key "
                "(hmac-sha256): set REMEDIATOR_AUDIT_KEY or auditKeyFile to that key"
            )
        if check.unguarded is not None:
            raise ImportRefused(f"{where}: {check.unguarded}; not imported")
        notes = list(check.notes)
        if check.torn is not None:  # never acknowledged: its action was never sent
            notes.append(f"{self.source}: a torn last line is not imported")
        return Source(memory, check.last_seq, check.last_hash, stamp, notes)

    @property
    def notes(self) -> list[str]:
        """What the last read found worth a word (a torn last line left out)."""
        return list(self._read.notes) if self._read is not None else []

    def forget(self) -> None:
        """Drop the source read (the estate's memory) until a partition needs it again;
        a refusal is kept, until the source changes."""
        self._read = None


def remembered_targets(memory: Replayed) -> int:
    """How many targets ``memory`` holds something of that binds what comes next: actions,
    breakers, intents without a result (a replica's own log with shards holds none)."""
    keys = {k for k, m in memory.memories.items() if m.history or m.breakers or m.told_human}
    return len(keys | set(memory.open_intents))


@contextlib.contextmanager
def _quiet(source: Path) -> Iterator[None]:
    """Hold a shared lock on the source's writer lock while reading it: no writer can
    start meanwhile, and a writer still running keeps the import waiting. The lock file
    is opened read-only and never created (the source's directory is not written)."""
    try:
        fd = os.open(lock_path(source), os.O_RDONLY)
    except FileNotFoundError:
        yield  # never written by a writer that locks: nothing can be writing it
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").split()
            raise SourceHeld(source, " on ".join(holder[:2]) or None) from None
        except OSError:
            pass  # a file system that cannot lock: as for any log, the operator's job
        yield
    finally:
        os.close(fd)  # lets go of the lock too


def _first_line(path: Path) -> dict[str, Any] | None:
    """A log file's first line, parsed (None when it has none, or it does not parse)."""
    try:
        with path.open(encoding="utf-8") as file:
            first = json.loads(file.readline() or "null")
    except (OSError, ValueError):
        return None
    return first if isinstance(first, dict) else None


def _stamp(path: Path) -> tuple[int, int, str]:
    stat = path.stat()
    head = path.with_name(path.name + ".head")
    try:
        recorded = head.read_text(encoding="utf-8")
    except OSError:
        recorded = ""
    return stat.st_size, stat.st_mtime_ns, recorded
