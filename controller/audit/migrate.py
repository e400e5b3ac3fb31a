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
- **The source is only read**, and verified as any replay is (chain, head, key, and its
  anchor, ``shards.importAnchor``, when it has one: a source cut from its end with its
  head rewritten to match is found). One that is missing, broken, unguarded or keyed
  without the key is refused: the partition does not start with no memory, and the
  replica is not ready until an operator acts.
- **Its writer fenced off.** The source is read, the seed built from it and the seed
  written under one shared lock on its writer lock: while the process that wrote it still
  runs (an old revision not yet stopped), the partition waits, so no line written after
  the import is missed and no target has two actors at once. A lock that cannot be taken
  refuses the import; nothing is written. The seed is written only if the source is
  still as verified (size, times, head, anchor): one that changed is read again.
- **Recognisable, and not again against another source or count.** The first seed writes
  ``imported.json`` in the partition logs' directory (the source's path, the seq and hash
  of its last line, ``partitions``, when). A later seed refuses a source that does not hold
  that line (another log) and a ``partitions`` that changed since (the targets' memory has
  moved on in the logs); a log in the directory imported with another count refuses it too.
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

from controller.audit.anchor import AnchorUnreadable
from controller.audit.lock import AuditLocked, lock_path
from controller.audit.log import AuditLog, check_file, rfc3339
from controller.audit.replay import Replayed, fold, snapshot_line
from controller.audit.rotation import rotated, series
from controller.audit.snapshot import Retention

IMPORTED_FROM = "imported_from"  # the seed line's field naming its source
MARKER = "imported.json"  # in the partition logs' directory, once the import began
REREADS = 3  # a source that changes under the lock this often is still being written
Stamp = tuple[object, ...]  # what says a file is unchanged: size, times, inode, head, anchor


class ImportRefused(Exception):
    """The source cannot be trusted (or read): the partition waits until it can."""


class SourceHeld(AuditLocked):
    """The process that wrote the source still holds it (or still writes it): the import
    waits for it to stop."""

    def __init__(self, source: Path, holder: str | None, why: str | None = None) -> None:
        self.log, self.lock, self.holder = source, lock_path(source), holder
        who = f"pid {holder}" if holder else "another process"
        Exception.__init__(
            self,
            why
            or (
                f"shards.importFrom {source} is held by {who}: the process that wrote it "
                "before shards still runs; the partition imports its memory once it stops"
            ),
        )


@dataclass(frozen=True)
class Source:
    """The source read and verified: its memory, and its last line (what seeds name)."""

    memory: Replayed
    seq: int
    hash: str
    stamp: Stamp  # taken before it was read: while the file's is the same, still good
    notes: list[str] = field(default_factory=list)
    marks: dict[int, str] = field(default_factory=dict)  # the hash of each line asked for


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
        anchor: Path | None = None,
    ) -> None:
        self.source = source
        self.key = key
        self.partitions = partitions
        self.anchor = anchor  # the source's auditAnchor (shards.importAnchor), if it had one
        self._partition_of = partition_of  # the shards' hash of a resource id
        self._now = now
        self.retention = retention or Retention()
        self._read: Source | None = None
        self._refused: tuple[Stamp, str] | None = None  # stamp, why
        self._unmarked: str | None = None  # why the marker could not be written

    def wants(self, log: AuditLog) -> bool:
        """Whether ``log`` (open) is new: no line and no rotated file, nothing to lose."""
        return log.lines == 0 and not rotated(log.path)

    def seed(self, log: AuditLog, partition: int, replica: str) -> int:
        """Write the seed line into ``log`` (open, new); return how many targets it holds.
        The source is read, the seed built and written under one shared lock on the
        source's writer lock, and only while the source is still as verified.
        Raises SourceHeld (wait), ImportRefused, AuditUnavailable."""
        directory = log.path.parent
        earlier = self._earlier(directory)
        want = earlier[1].get("seq") if earlier is not None else None
        with _quiet(self.source):
            for _ in range(REREADS):
                source = self._current(want if isinstance(want, int) else None)
                if earlier is not None:
                    self._same_source(source, *earlier)
                fields, targets = self._seed_fields(source, log, partition, replica)
                if self._stamp() != source.stamp:
                    continue  # written since it was verified: read it again
                log.append_fields(fields)
                self._mark(directory, source, partition, replica)
                return targets
        raise SourceHeld(
            self.source,
            None,
            f"shards.importFrom {self.source} changed each of the {REREADS} times it was "
            "read: a process still writes it (one that takes no writer lock); the "
            "partition imports its memory once it stops",
        )

    def _seed_fields(
        self, source: Source, log: AuditLog, partition: int, replica: str
    ) -> tuple[dict[str, Any], int]:
        """The seed line for ``partition``, and how many targets it holds."""
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
        return fields, len(share.memories)

    def _earlier(self, directory: Path) -> tuple[str, dict[str, Any]] | None:
        """What an earlier import into ``directory`` recorded (its marker, else a partition
        log's seed), and where. Refuses one made with another count of partitions: its
        targets' memory has moved on in those logs since, and the old log would bring
        back what it held of them."""
        found: list[tuple[str, dict[str, Any]]] = []
        marker = _read_marker(directory / MARKER)
        if marker is not None:
            found.append((MARKER, marker))
        for path in sorted(directory.glob("partition-*.jsonl")):
            files = series(path)
            first = _first_line(files[0]) if files else None
            seeded = (first or {}).get(IMPORTED_FROM)
            if isinstance(seeded, dict):
                found.append((path.name, seeded))
        for where, seeded in found:
            if seeded.get("partitions") != self.partitions:
                raise ImportRefused(
                    f"{where}: imported from {seeded.get('path')} with "
                    f"{seeded.get('partitions')} partitions, and partitions is now "
                    f"{self.partitions}: that log's memory is out of date for the partitions "
                    "new since; remove shards.importFrom (the switch to shards is done)"
                )
        return found[0] if found else None

    def _same_source(self, source: Source, where: str, earlier: dict[str, Any]) -> None:
        """Refuse a source that does not hold the line an earlier import ended at: another
        log than the one the other partitions started from."""
        seq, digest = earlier.get("seq"), earlier.get("hash")
        if isinstance(seq, int) and source.marks.get(seq) == digest:
            return
        raise ImportRefused(
            f"shards.importFrom {self.source} does not hold line {seq} with the hash "
            f"{str(digest)[:16]}… that {where} recorded: the other partitions were imported "
            f"from another log ({earlier.get('path')}), or this one was rotated or rewritten "
            "since; name that log, or remove importFrom (the switch to shards is done)"
        )

    def _mark(self, directory: Path, source: Source, partition: int, replica: str) -> None:
        """Record the import in ``directory`` once: the first seed's source and count."""
        marker = directory / MARKER
        if marker.exists():
            return
        body = {
            "path": str(self.source),
            "seq": source.seq,
            "hash": source.hash,
            "partitions": self.partitions,
            "at": rfc3339(self._now()),
            "partition": partition,
            "replica": replica,
        }
        temp = marker.with_name(f"{MARKER}.{os.getpid()}.tmp")
        try:
            with temp.open("w", encoding="utf-8") as file:
                json.dump(body, file, indent=2)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, marker)
            self._unmarked = None
        except OSError as exc:  # the seed is written: the next seed writes it
            self._unmarked = f"{marker}: cannot write the import marker: {exc}"

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

    def _stamp(self) -> Stamp:
        return (*_stamp(self.source), _file_stamp(self.anchor))

    def _current(self, want: int | None) -> Source:
        """The source, verified (its writer lock held); read again only if it changed
        since the last read, or a line is wanted that read did not note (a refusal is
        kept too: a broken source is not verified again every retry period)."""
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
        stamp = self._stamp()
        read = self._read
        if read is not None and read.stamp == stamp and (want is None or want in read.marks):
            return read
        if self._refused is not None and self._refused[0] == stamp:
            raise ImportRefused(self._refused[1])
        self._read = self._refused = None
        try:
            self._read = self._verified(stamp, want)
        except ImportRefused as exc:
            self._refused = (stamp, str(exc))
            raise
        return self._read

    def _verified(self, stamp: Stamp, want: int | None) -> Source:
        """Read and verify the source (its writer fenced off), or say why it is refused."""
        memory = Replayed()
        marks: dict[int, str] = {}

        def each(fields: dict[str, Any]) -> None:
            if want is not None and fields.get("seq") == want:
                marks[want] = str(fields.get("hash"))
            fold(memory, fields)

        where = f"shards.importFrom {self.source}"
        if self.anchor is not None and not self.anchor.is_file():
            raise ImportRefused(
                f"shards.importAnchor {self.anchor}: no such file (the anchor of {self.source}, "
                "its auditAnchor); fix the path, or remove importAnchor to hold the source to "
                "its head alone"
            )
        try:
            check = check_file(self.source, key=self.key, anchor=self.anchor, each=each)
        except AnchorUnreadable as exc:
            raise ImportRefused(f"shards.importAnchor: {exc}") from exc
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
        marks[check.last_seq] = check.last_hash  # what a marker written from it names
        return Source(memory, check.last_seq, check.last_hash, stamp, notes, marks)

    @property
    def notes(self) -> list[str]:
        """What the last read found worth a word (a torn last line left out, a marker
        that could not be written)."""
        notes = list(self._read.notes) if self._read is not None else []
        return notes + ([self._unmarked] if self._unmarked else [])

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
    """Hold a shared lock on the source's writer lock while reading it and writing the
    seed: no writer can start meanwhile, a writer still running keeps the import waiting,
    and a lock that cannot be taken refuses it. The lock file is opened read-only and
    never created (the source's directory is not written)."""
    lock = lock_path(source)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        yield  # never written by a writer that locks (a change under it is read again)
        return
    except OSError as exc:
        raise ImportRefused(
            f"shards.importFrom {source}: cannot open its lock {lock}: {exc}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").split()
            raise SourceHeld(source, " on ".join(holder[:2]) or None) from None
        except OSError as exc:  # a file system that cannot lock: no fence, no import
            raise ImportRefused(
                f"shards.importFrom {source}: cannot take a shared lock on {lock} "
                f"({exc.strerror}): the process that wrote it could still be writing it; "
                "nothing imported (move the log to storage that can lock)"
            ) from None
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


def _read_marker(path: Path) -> dict[str, Any] | None:
    """The import marker (None when there is none). Raises ImportRefused."""
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImportRefused(
            f"{path}: cannot read the import marker ({exc}): it says which log the "
            "partition logs were imported from; mend it, or remove shards.importFrom"
        ) from exc
    if not isinstance(marker, dict):
        raise ImportRefused(f"{path}: not an import marker: {str(marker)[:80]}")
    return marker


def _stamp(path: Path) -> Stamp:
    """A log as it is now, without reading it: any write changes size, ctime or head."""
    stat = path.stat()
    head = path.with_name(path.name + ".head")
    try:
        recorded = head.read_text(encoding="utf-8")
    except OSError:
        recorded = ""
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, recorded


def _file_stamp(path: Path | None) -> object:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino
