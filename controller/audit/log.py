"""Append-only, hash-chained JSON-lines audit log.

Each line is one :class:`Record` sealed into the chain (see :mod:`controller.audit.chain`),
written, flushed and fsynced before :meth:`AuditLog.append` returns — so a line that
was acknowledged survives a crash, and an action whose intent could not be written
is never run (the caller gets :class:`AuditUnavailable`).

The fields listed on :class:`Record` are a stable contract: later versions add fields,
never remove or rename these.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, field_serializer

from controller.audit.chain import GENESIS, SNAPSHOT, Verification, seal, verify
from controller.audit.replay import Replayed, fold, snapshot_line
from controller.audit.rotation import Rotation, finish_interrupted, rotate

log = structlog.get_logger("remediator.audit")

Kind = Literal[
    "decision", "intent", "result", "verdict", "verification", "escalation", "approval", "resolved"
]


class Record(BaseModel):
    """One decision, intent, result or change of verdict for one target.

    ``kind``: ``decision`` — a denial, or a dry-run would-run, complete in itself;
    ``intent`` — written before a live action runs; ``result`` — its outcome, with
    ``intent`` naming the intent's ``seq``; ``verdict`` — an objective changed state or
    the reason for doing nothing changed; ``verification`` — an action judged after it
    settled (``efficacy``); ``escalation`` — something a human must look at;
    ``approval`` — an operator's answer to a ``pending-approval`` decision;
    ``resolved`` — what an escalation held has cleared (fail static released).
    """

    model_config = ConfigDict(frozen=True)
    ts: datetime
    kind: Kind = "decision"
    policy: str
    target: str
    verdict: str  # the worst objective state: breach > unknown > recovering > ok
    verdicts: list[dict[str, Any]]
    action: str | None
    params: dict[str, Any]
    decision: str | None  # allow | deny | pending-approval; null when nothing was proposed
    reason: str
    guard: str | None = None
    mode: str
    outcome: str | None  # succeeded | failed | would-run; null when nothing ran
    before: dict[str, Any]
    after: dict[str, Any]
    reconcile_id: str
    step: int | None = None  # the ladder rung the action came from
    intent: int | None = None  # on a result line: the seq of its intent
    verify_at: datetime | None = None  # on a result line: when its effect will be judged
    efficacy: str | None = None  # improved | not-improved | failed (verification lines)
    breaker: dict[str, Any] | None = None  # the action's breaker after this line
    approval_id: str | None = None  # a pending-approval decision, or the answer to one

    @field_serializer("ts", "verify_at")
    def _rfc3339(self, ts: datetime | None) -> str | None:
        return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AuditUnavailable(Exception):
    """The audit log cannot be written: nothing may run until it can."""


class AuditCorrupt(Exception):
    """The audit chain is broken: its memory cannot be trusted."""

    def __init__(self, path: Path, check: Verification) -> None:
        self.path, self.check = path, check
        super().__init__(f"{path}:{check.first_bad}: audit chain broken: {check.problem}")


class AuditSink(Protocol):
    """Where records go: the file in production, a list for previews and tests."""

    def append(self, record: Record) -> int:
        """Seal and store ``record``; return its ``seq``. Raises AuditUnavailable."""
        ...

    def problem(self) -> str | None:
        """Why records cannot be stored now, or None (what readiness reports)."""
        ...


class MemoryAudit:
    """Keeps sealed records in memory: ``remediator plan`` previews must not become history."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._prev = GENESIS

    def append(self, record: Record) -> int:
        sealed = seal(record.model_dump(mode="json"), len(self.records) + 1, self._prev)
        self.records.append(sealed)
        self._prev = sealed["hash"]
        return int(sealed["seq"])

    def problem(self) -> str | None:
        return None


class AuditLog:
    """The file sink. Opening it verifies the chain (streaming: it keeps the replayed
    memory, not the lines) and sets aside a torn last line. With ``rotation`` the file
    is rotated as it grows (see :mod:`controller.audit.rotation`)."""

    def __init__(
        self,
        path: str | Path,
        on_write: Callable[[float | None], None] | None = None,
        rotation: Rotation | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_write = on_write  # told each write's duration (None: it failed), for metrics
        self.rotation = rotation
        self.state = Replayed()  # every line replayed: what a snapshot holds
        self.lines = 0  # good lines found at open
        self.torn_to: Path | None = None  # where a torn last line was set aside
        self._file: IO[str] | None = None
        self._seq = 0
        self._prev = GENESIS
        self._failure: str | None = None  # the last write's error, until a write succeeds
        self._size = 0  # bytes in the active file
        self._started: datetime | None = None  # the active file's first line's time
        self._tail = 0  # lines after the active file's snapshot

    def __enter__(self) -> AuditLog:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def head_path(self) -> Path:
        """``<log>.head``: the last line's seq and hash, so lines cut from the end show."""
        return head_path(self.path)

    def open(self) -> None:
        """Verify what is there (raising AuditCorrupt), then open for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        finish_interrupted(self.path)
        self.state = Replayed()
        check = check_file(self.path, each=self._fold) if self.path.exists() else Verification()
        if not check.ok:
            self.state = Replayed()
            raise AuditCorrupt(self.path, check)
        if check.torn is not None:
            self._set_aside(check.torn)
        self.lines = check.lines
        self._seq, self._prev = check.last_seq, check.last_hash
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()

    def _fold(self, fields: dict[str, Any]) -> None:
        """One verified line into the memory, and what rotation watches."""
        fold(self.state, fields)
        if self._started is None or fields.get("kind") == SNAPSHOT:
            self._started, self._tail = _time(fields.get("ts")), 0
        else:
            self._tail += 1

    def memory(self) -> Replayed:
        """The memory the log holds (a copy: the log goes on folding its own)."""
        return copy.deepcopy(self.state)

    def _set_aside(self, torn: str) -> None:
        """Move a torn last line to ``<log>.torn`` and cut it from the log; lose nothing."""
        self.torn_to = self.path.with_name(self.path.name + ".torn")
        with self.torn_to.open("a", encoding="utf-8") as aside:
            aside.write(torn if torn.endswith("\n") else torn + "\n")
            aside.flush()
            os.fsync(aside.fileno())
        with self.path.open("r+b") as file:
            file.truncate(file.seek(0, 2) - len(torn.encode("utf-8")))
            file.flush()
            os.fsync(file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: Record) -> int:
        if self._file is None:
            raise AuditUnavailable(f"{self.path}: the audit log is not open")
        sealed = seal(record.model_dump(mode="json"), self._seq + 1, self._prev)
        text = json.dumps(sealed, ensure_ascii=False) + "\n"
        started = time.perf_counter()
        try:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())
        except (OSError, ValueError) as exc:
            self._failure = f"{self.path}: cannot write the audit log: {exc}"
            self._tell(None)
            raise AuditUnavailable(self._failure) from exc
        self._seq, self._prev = sealed["seq"], sealed["hash"]
        self._fold(sealed)  # on disk: it is memory now, whatever follows
        self._size += len(text.encode("utf-8"))
        try:
            self._write_head()
        except AuditUnavailable:
            self._tell(None)
            raise
        self._failure = None
        self._tell(time.perf_counter() - started)
        self._maybe_rotate(sealed)
        return int(sealed["seq"])  # this line's, even when a snapshot followed it

    def _maybe_rotate(self, last: dict[str, Any]) -> None:
        """Past the limit: close this file, start one with the snapshot. A failure leaves
        the active file as it was (it is tried again after the next line)."""
        rule = self.rotation
        if rule is None or self._file is None:
            return
        ts = str(last["ts"])
        if not rule.due(self._size, self._started, _time(ts), self._tail):
            return
        fields = snapshot_line(self.state, ts, self.path.name, rule.retention)
        sealed = seal(fields, self._seq + 1, self._prev)
        text = json.dumps(sealed, ensure_ascii=False) + "\n"
        self._file.close()
        try:
            rotate(self.path, text)
        except OSError as exc:
            log.warning("audit rotation failed; the active file goes on", error=str(exc))
            self._file = self.path.open("a", encoding="utf-8")
            return
        self._file = self.path.open("a", encoding="utf-8")
        self._seq, self._prev = sealed["seq"], sealed["hash"]
        self._started, self._tail, self._size = _time(ts), 0, len(text.encode("utf-8"))
        # a head one line behind the snapshot still checks; the next line rewrites it
        with contextlib.suppress(AuditUnavailable):
            self._write_head()

    def _tell(self, seconds: float | None) -> None:
        if self.on_write is not None:
            self.on_write(seconds)

    def problem(self) -> str | None:
        """Why the log cannot be written now (for readiness), or None."""
        if self._file is None:
            return f"{self.path}: the audit log is not open"
        if self._failure is not None:
            return self._failure
        if not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            return f"{self.path}: the audit log or its directory is not writable"
        return None

    def _write_head(self) -> None:
        temp = self.head_path.with_name(self.head_path.name + ".tmp")
        try:
            with temp.open("w", encoding="utf-8") as file:
                json.dump({"seq": self._seq, "hash": self._prev}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.head_path)
        except OSError as exc:
            self._failure = f"{self.head_path}: cannot record the log's head: {exc}"
            raise AuditUnavailable(self._failure) from exc


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def check_file(
    path: str | Path, each: Callable[[dict[str, Any]], None] | None = None
) -> Verification:
    """Verify an audit file and its head: any edit, deletion, insertion or reordering.

    Streams the file: each good line goes to ``each``; none is kept.
    """
    path = Path(path)
    head = _read_head(head_path(path))
    named: list[str] = []  # the hash of the line the head names, once seen

    def visit(fields: dict[str, Any]) -> None:
        if head is not None and fields.get("seq") == head[0]:
            named.append(str(fields.get("hash")))
        if each is not None:
            each(fields)

    with path.open(encoding="utf-8", newline="\n") as file:
        check = verify(file, keep=False, each=visit)
    if check.ok and head is not None:
        _check_head(check, head, named[0] if named else None)
    return check


def _read_head(path: Path) -> tuple[int, str] | None:
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        return int(recorded["seq"]), str(recorded["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a head torn by a crash says nothing; the chain itself is whole


def _check_head(check: Verification, head: tuple[int, str], named: str | None) -> None:
    seq, digest = head
    if seq > check.last_seq:
        check.first_bad = check.lines + 1
        check.problem = (
            f"lines {check.lines + 1}..{seq - check.first_seq + 1} were removed from the end"
        )
    elif seq >= check.first_seq and named != digest:
        check.first_bad = seq - check.first_seq + 1
        check.problem = "the line the head records was replaced"
    elif 1 <= seq < check.first_seq and (seq != check.first_seq - 1 or digest != check.first_prev):
        # a head one line behind the snapshot: a crash between rotating and writing the head
        check.first_bad = 1
        check.problem = "the head names a line this file does not follow"


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete line of an audit file, as dicts (no verification)."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
