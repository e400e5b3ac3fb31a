"""One audit log per partition, for replicas that split the estate (shards).

A target's memory (its actions, what budgets count, breakers, actions still without a
result, escalations sent) lives in the log of its partition, ``partition-NNN.jsonl`` in
a directory every replica reaches. Whoever owns the partition writes it: a replica that
takes a partition opens its log (the same chain, key, anchor, rotation and writer lock
as any audit log) and replays it before running the partition's targets; one that loses
it closes the log, once its actions in flight have their results.

The partition's blob lease decides who writes; the log's writer lock is a second fence:
an old owner that still holds the file (paused, or finishing an action) keeps the new
one waiting — it retries every retry period and runs none of the partition's targets
until it holds the lock. Each line says which replica wrote it (``replica``).

A partition that does not open either waits (``waiting``: its log, or the log it imports
from, is held by another writer, which lets go by itself) or is refused (``refused``: its
log or its import cannot be trusted, read or locked — an operator must act, and the
replica is not ready meanwhile). Both are tried again every retry period.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.audit.lock import AuditLocked
from controller.audit.log import AuditLog, AuditSink, AuditUnavailable, Record
from controller.audit.migrate import Importer, ImportRefused
from controller.audit.replay import Replayed
from controller.audit.rotation import Rotation
from controller.memory import TargetMemory, target_key


def partition_log(directory: Path, partition: int) -> Path:
    """Where partition ``partition`` keeps its memory."""
    return directory / f"partition-{partition:03d}.jsonl"


def partition_logs_in(directory: Path) -> list[Path]:
    """Every partition's active log in ``directory``."""
    return sorted(directory.glob("partition-*.jsonl"))


class CannotLock(Exception):
    """The audit directory's file system cannot lock: two owners could write one log."""


class PartitionSink:
    """What a target of one partition writes through: its partition's log, each line
    signed with the replica that wrote it. Refused once the log is closed (lost)."""

    def __init__(self, log: AuditLog, replica: str) -> None:
        self._log, self._replica = log, replica

    def append(self, record: Record) -> int:
        return self._log.append_fields({**record.model_dump(mode="json"), "replica": self._replica})

    def problem(self) -> str | None:
        return self._log.problem()


class PartitionLogs:
    """The partition logs this replica holds open, and those it waits for."""

    def __init__(
        self,
        directory: Path,
        replica: str,
        make: Callable[[Path], AuditLog],
        run_log: AuditSink | None = None,
        importer: Importer | None = None,
    ) -> None:
        self.directory = directory
        self.replica = replica
        self._make = make  # an AuditLog for a path: the settings' key, anchor, rotation
        self._run_log = run_log  # the replica's own log: its readiness counts too
        self.importer = importer  # seeds a new partition log from the log before shards
        self._open: dict[int, AuditLog] = {}
        # owned, but not open: why. Waiting: another writer holds the log, or the log to
        # import from (it lets go by itself). Refused: the log or its import cannot be
        # trusted, read or locked (an operator must act)
        self.waiting: dict[int, str] = {}
        self.refused: dict[int, str] = {}
        self.imported: dict[int, int] = {}  # partitions seeded by this replica: targets
        self._told: dict[int, set[str]] = {}  # the reasons said of each, until it opens
        self._announced: set[int] = set()  # partitions whose import has been said

    def open(self, partition: int) -> Replayed | None:
        """Open and replay ``partition``'s log (a new one seeded first, when importing);
        None while another writer holds it or the source (try again later). Raises
        AuditCorrupt, AuditKeyError, CannotLock, ImportRefused."""
        if partition in self._open:
            return self._open[partition].memory()
        log = self._make(partition_log(self.directory, partition))
        try:
            log.open()
        except AuditLocked as exc:
            self.wait(partition, str(exc))
            return None
        if log.lock_unsupported is not None:
            log.close()
            raise CannotLock(
                f"{log.lock_unsupported}; a partition's log needs its lock: "
                "an old owner still writing it must keep the new one waiting"
            )
        if not self._seeded(log, partition):
            return None
        self.waiting.pop(partition, None)
        self.refused.pop(partition, None)
        self._told.pop(partition, None)
        self._open[partition] = log
        return log.memory()

    def wait(self, partition: int, why: str) -> None:
        """``partition`` waits for another writer to let go of its log (or its source)."""
        self.refused.pop(partition, None)
        self.waiting[partition] = why

    def refuse(self, partition: int, why: str) -> None:
        """``partition`` cannot open until an operator acts (tried again all the same)."""
        self.waiting.pop(partition, None)
        self.refused[partition] = why

    def news(self, partition: int) -> str | None:
        """Why ``partition`` waits or is refused, if that was not said yet: said once per
        reason, not every retry period."""
        why = self.refused.get(partition) or self.waiting.get(partition)
        told = self._told.setdefault(partition, set())
        if why is None or why in told:
            return None
        told.add(why)
        return why

    def newly_imported(self, partition: int) -> int | None:
        """How many targets ``partition``'s seed holds, the first time it is asked after
        this replica seeded it (not on every reopen)."""
        if partition not in self.imported or partition in self._announced:
            return None
        self._announced.add(partition)
        return self.imported[partition]

    def keep(self, owned: set[int]) -> None:
        """Forget why partitions no longer owned waited or were refused."""
        for reasons in (self.waiting, self.refused):
            for partition in set(reasons) - owned:
                del reasons[partition]

    def _seeded(self, log: AuditLog, partition: int) -> bool:
        """Seed a new partition log from the log before shards, if asked to; False (the
        log closed again) while the source's writer still runs. Raises ImportRefused."""
        importer = self.importer
        if importer is None or not importer.wants(log):
            return True
        try:
            self.imported[partition] = importer.seed(log, partition, self.replica)
        except AuditLocked as exc:  # the source's writer still runs: wait for it
            log.close()
            self.wait(partition, str(exc))
            return False
        except AuditUnavailable as exc:
            log.close()
            raise ImportRefused(f"{log.path}: cannot write the import: {exc}") from exc
        except BaseException:
            log.close()
            raise
        return True

    def is_open(self, partition: int) -> bool:
        return partition in self._open

    def opened(self) -> set[int]:
        return set(self._open)

    def sink(self, partition: int) -> PartitionSink:
        return PartitionSink(self._open[partition], self.replica)

    def memory_of(self, partition: int, policy: str, resource_id: str) -> TargetMemory | None:
        """What the partition's log remembers of one target now (a copy)."""
        log = self._open.get(partition)
        if log is None:
            return None
        return copy.deepcopy(log.state.memories.get(target_key(policy, resource_id)))

    def open_intents_of(
        self, partition: int, policy: str, resource_id: str
    ) -> Callable[[], list[dict[str, Any]]]:
        """The target's intents the log holds without a result (a previous owner's, or
        this replica's before the target was rebuilt), asked for when the target first
        runs: by then an action in flight for it has written its result."""
        key = target_key(policy, resource_id)

        def still_open() -> list[dict[str, Any]]:
            log = self._open.get(partition)
            return copy.deepcopy(log.state.open_intents.get(key, [])) if log else []

        return still_open

    def close(self, partition: int) -> None:
        """Stop writing ``partition``'s log and let go of its lock."""
        self.waiting.pop(partition, None)
        self.refused.pop(partition, None)
        log = self._open.pop(partition, None)
        if log is not None:
            log.close()

    def close_all(self) -> None:
        for partition in list(self._open):
            self.close(partition)

    def set_rotation(self, rotation: Rotation) -> None:
        """A reload may need a longer history kept: every log, open or opened later."""
        for log in self._open.values():
            log.rotation = rotation
        make = self._make

        def rotated(path: Path) -> AuditLog:
            log = make(path)
            log.rotation = rotation
            return log

        self._make = rotated

    def problem(self) -> str | None:
        """Why a line could not be written now (the replica's log, or a partition's)."""
        if self._run_log is not None and (problem := self._run_log.problem()):
            return problem
        for log in self._open.values():
            if problem := log.problem():
                return problem
        return None
