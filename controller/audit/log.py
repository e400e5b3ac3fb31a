"""Append-only, hash-chained JSON-lines audit log.

Each line is one :class:`Record` sealed into the chain (see :mod:`controller.audit.chain`),
written, flushed and fsynced before :meth:`AuditLog.append` returns — so a line that
was acknowledged survives a crash, and an action whose intent could not be written
is never run (the caller gets :class:`AuditUnavailable`).

The fields listed on :class:`Record` are a stable contract: later versions add fields,
never remove or rename these.

One writer per file (:mod:`controller.audit.lock`). With a key, lines and the head are
sealed with HMAC-SHA256; with an anchor, each line's (seq, hash) is also copied to other
storage (:mod:`controller.audit.anchor`). A log with lines whose head is missing, corrupt
or unsigned is refused at open unless an anchor vouches for it: nothing would show lines
cut from its end (``remediator audit repair`` accepts it, on the record). With a
rotation rule the file is rotated as it grows (:mod:`controller.audit.rotation`), and a
start streams the active file alone: its snapshot line, then the tail.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, field_serializer

from controller.audit.anchor import append_anchor, read_anchor
from controller.audit.chain import GENESIS, SNAPSHOT, Verification, line_hash, seal, verify
from controller.audit.lock import WriterLock
from controller.audit.replay import Replayed, fold, snapshot_line
from controller.audit.rotation import Rotation, finish_interrupted, rotate

log = structlog.get_logger("remediator.audit")

Kind = Literal[
    "decision",
    "intent",
    "result",
    "verdict",
    "verification",
    "escalation",
    "approval",
    "resolved",
    "repair",
    "budget",
]


WALL_TS = "wall_ts"  # when a line was written, in wall time, beside a scenario ``ts``


def rfc3339(ts: datetime) -> str:
    """A time as the audit log writes it: UTC, ``Z``."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Record(BaseModel):
    """One decision, intent, result or change of verdict for one target.

    ``kind``: ``decision`` — a denial, or a dry-run would-run, complete in itself;
    ``intent`` — written before a live action runs; ``result`` — its outcome, with
    ``intent`` naming the intent's ``seq``; ``verdict`` — an objective changed state or
    the reason for doing nothing changed; ``verification`` — an action judged after it
    settled (``efficacy``); ``escalation`` — something a human must look at;
    ``approval`` — an operator's answer to a ``pending-approval`` decision;
    ``resolved`` — what an escalation held has cleared (fail static released);
    ``budget`` — with shards, actions of the hour a replica that lost this partition had
    spent beyond its new share (``params.spent``), and the tokens the partition's slice of
    each subscription's bucket lacked (``params.owed``), handed to its next owner.
    (``repair`` lines — ``remediator audit repair`` re-established a broken chain — are
    not records of a policy: see :mod:`controller.audit.repair`.)
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
        return None if ts is None else rfc3339(ts)


class AuditUnavailable(Exception):
    """The audit log cannot be written: nothing may run until it can. ``written``: the
    line itself is on disk; what failed came after it (the head, the anchor)."""

    written: bool = False


class AuditCorrupt(Exception):
    """The audit chain is broken: its memory cannot be trusted."""

    def __init__(self, path: Path, check: Verification) -> None:
        self.path, self.check = path, check
        if check.first_bad is None:  # whole, but a cut from its end would not show
            super().__init__(f"{path}: {check.unguarded}")
        else:
            super().__init__(f"{path}:{check.first_bad}: audit chain broken: {check.problem}")


class AuditKeyError(Exception):
    """The log is keyed and no key was given, or the key cannot be read."""


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
    """The file sink. Opening it takes the writer lock, verifies the chain (streaming: it
    keeps the replayed memory, not the lines) and sets aside a torn last line. With
    ``rotation`` the file is rotated as it grows (see :mod:`controller.audit.rotation`)."""

    def __init__(
        self,
        path: str | Path,
        on_write: Callable[[float | None], None] | None = None,
        rotation: Rotation | None = None,
        *,
        key: bytes | None = None,
        anchor: Path | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        # a controller on a scenario clock: each line's ``ts`` is scenario time (what its
        # memory is replayed by), so the wall time it was written goes beside it
        self.wall = wall
        self.on_write = on_write  # told each write's duration (None: it failed), for metrics
        self.rotation = rotation
        self.key = key  # seal lines with HMAC-SHA256 (None: plain SHA-256)
        self.anchor = anchor  # copy each line's (seq, hash) here: other storage
        self.notes: list[str] = []  # what open found worth a warning
        self._lock = WriterLock(self.path)
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
        self._reopening = False  # the active file could not be opened again after a rotation

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

    def open(self, *, accept_unguarded: bool = False) -> None:
        """Take the writer lock, verify what is there (raising AuditCorrupt), then open
        for appending. ``accept_unguarded``: a whole chain nothing guards is taken as it
        stands (``audit repair`` does, and records it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock()
        try:
            finish_interrupted(self.path)  # a rotation a crash cut short
            self.state, self._started, self._tail = Replayed(), None, 0
            check = (
                check_file(self.path, key=self.key, anchor=self.anchor, each=self._fold)
                if self.path.exists()
                else Verification()
            )
            self._refuse_unless_trusted(check, accept_unguarded)
            if check.torn is not None:
                self._set_aside(check.torn)
            self.lines = check.lines
            self._seq, self._prev = check.last_seq, check.last_hash
            self._file = self.path.open("a", encoding="utf-8")
            self._size = self._file.tell()
            self._settle_head_and_anchor()
        except BaseException:
            self.state = Replayed()
            self.close()
            raise

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

    def lock(self) -> None:
        """Become the log's one writer, or raise AuditLocked at once."""
        self._lock.acquire()

    @property
    def lock_unsupported(self) -> str | None:
        """Why this file system could not lock the log (one writer is then unenforced)."""
        return self._lock.unsupported

    def _refuse_unless_trusted(self, check: Verification, accept_unguarded: bool) -> None:
        """A broken chain, a keyed log without its key, or a log whose end nothing
        guards (no head, no anchor) is not memory to act on."""
        if not check.ok:
            raise AuditCorrupt(self.path, check)
        if check.keyed_from is not None and self.key is None:
            raise AuditKeyError(
                f"{self.path}: lines from {check.keyed_from} on are sealed with a key "
                "(hmac-sha256): set REMEDIATOR_AUDIT_KEY or auditKeyFile to that key"
            )
        if check.unguarded is not None and not accept_unguarded:
            raise AuditCorrupt(self.path, check)
        self.notes = list(check.notes)
        if self._lock.unsupported is not None:
            self.notes.append(self._lock.unsupported)

    def _settle_head_and_anchor(self) -> None:
        """Give a new log its head at once (a log with lines and no head is suspect), and
        start or catch up the anchor."""
        if not head_path(self.path).exists():
            self._write_head()
        if self.anchor is not None and self._seq:
            recorded = read_anchor(self.anchor)
            if recorded is None:
                self.notes.append(f"{self.anchor}: no anchor yet; it starts at line {self._seq}")
            if max(recorded or {0: ""}) < self._seq:
                self._write_anchor()

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
        self._lock.release()

    def append(self, record: Record) -> int:
        return self.append_fields(record.model_dump(mode="json"))

    def append_fields(self, fields: dict[str, Any]) -> int:
        """Seal any line (a record, or a ``repair``) into the chain; return its ``seq``."""
        if self._file is None and self._reopening:
            try:
                self._reopen()
            except AuditUnavailable as exc:
                exc.written = False  # this line is not on disk
                raise
        if self._file is None:
            raise AuditUnavailable(f"{self.path}: the audit log is not open")
        if self.wall is not None:
            fields = {**fields, WALL_TS: rfc3339(self.wall())}
        sealed = seal(fields, self._seq + 1, self._prev, self.key)
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
            self._write_anchor()
        except AuditUnavailable as exc:
            self._tell(None)
            exc.written = True  # the line stands: a caller must not write it again
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
        sealed = seal(fields, self._seq + 1, self._prev, self.key)
        text = json.dumps(sealed, ensure_ascii=False) + "\n"
        self._file.close()
        self._file = None
        try:
            rotate(self.path, text)
        except OSError as exc:
            log.warning("audit rotation failed; the active file goes on", error=str(exc))
            self._reopen()
            return
        self._seq, self._prev = sealed["seq"], sealed["hash"]
        self._started, self._tail, self._size = _time(ts), 0, len(text.encode("utf-8"))
        self._reopen()
        # a head one line behind the snapshot still checks; the next line rewrites both
        with contextlib.suppress(AuditUnavailable):
            self._write_head()
            self._write_anchor()

    def _reopen(self) -> None:
        """Open the active file again after a rotation (done or not). When it cannot be,
        the line just written stands (AuditUnavailable says so) and the next write tries
        again; until then nothing is acted on."""
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            self._reopening = True
            self._failure = f"{self.path}: cannot reopen the audit log after rotation: {exc}"
            self._tell(None)
            refused = AuditUnavailable(self._failure)
            refused.written = True
            raise refused from exc
        self._reopening = False

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
        try:
            write_head(self.path, self._seq, self._prev, self.key)
        except OSError as exc:
            self._failure = f"{self.head_path}: cannot record the log's head: {exc}"
            raise AuditUnavailable(self._failure) from exc

    def _write_anchor(self) -> None:
        if self.anchor is None:
            return
        try:
            append_anchor(self.anchor, self._seq, self._prev)
        except OSError as exc:
            self._failure = f"{self.anchor}: cannot write the audit anchor: {exc}"
            raise AuditUnavailable(self._failure) from exc


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def head_signature(seq: int, digest: str, key: bytes) -> str:
    """The head's own MAC: without the key nobody can point it at an earlier line."""
    return line_hash({"seq": seq, "head": digest}, key)


def write_head(path: Path, seq: int, digest: str, key: bytes | None = None) -> None:
    """Record ``<log>.head`` atomically (a temp file renamed over it). Raises OSError."""
    head = head_path(path)
    body: dict[str, Any] = {"seq": seq, "hash": digest}
    if key is not None:
        body["sig"] = head_signature(seq, digest, key)
    temp = head.with_name(head.name + ".tmp")
    with temp.open("w", encoding="utf-8") as file:
        json.dump(body, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, head)


def check_file(
    path: str | Path,
    *,
    key: bytes | None = None,
    anchor: Path | None = None,
    each: Callable[[dict[str, Any]], None] | None = None,
    keep: bool = False,
) -> Verification:
    """Verify an audit file, its head and (if given) its anchor: any edit, deletion,
    insertion, reordering or cut; with the key, any re-hashing too.

    Streams the file: each good line goes to ``each``; lines are kept only with ``keep``.
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="\n") as file:
        return _check(path, file, key=key, anchor=anchor, each=each, keep=keep)


def check_file_text(
    path: Path, raw: str, *, key: bytes | None = None, anchor: Path | None = None
) -> Verification:
    """:func:`check_file` of ``raw``, the file's text as read, keeping its lines."""
    return _check(path, raw.splitlines(keepends=True), key=key, anchor=anchor, keep=True)


@dataclass(frozen=True)
class _Head:
    seq: int
    digest: str
    sig: str | None


def _check(
    path: Path,
    lines: Iterable[str],
    *,
    key: bytes | None,
    anchor: Path | None,
    each: Callable[[dict[str, Any]], None] | None = None,
    keep: bool,
) -> Verification:
    head = _read_head(head_path(path))
    expected = read_anchor(anchor) if anchor is not None else None  # raises AnchorUnreadable
    named: list[str] = []  # the hash of the line the head names, once seen
    seen: dict[int, str] = {}  # the hashes of the lines the anchor recorded

    def visit(fields: dict[str, Any]) -> None:
        seq = fields.get("seq")
        if isinstance(head, _Head) and seq == head.seq:
            named.append(str(fields.get("hash")))
        if expected is not None and isinstance(seq, int) and seq in expected:
            seen[seq] = str(fields.get("hash"))
        if each is not None:
            each(fields)

    check = verify(lines, keep=keep, key=key, each=visit)
    if not check.ok:
        return check
    _check_head(path, check, key, head, named[0] if named else None)
    if check.ok and anchor is not None and expected is not None:
        _check_anchor(anchor, check, expected, seen)
    if check.ok and key is not None and check.lines and check.keyed_from is None:
        check.unguarded = check.unguarded or (
            "a key is given but no line is sealed with it: anyone could have written or "
            "re-hashed this log (`remediator audit repair` seals it from here on, on the record)"
        )
    return check


def _read_head(path: Path) -> _Head | str | None:
    """The head as recorded; None when there is none, why when it cannot be read."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        sig = recorded.get("sig") if isinstance(recorded, dict) else None
        return _Head(
            int(recorded["seq"]), str(recorded["hash"]), sig if isinstance(sig, str) else None
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return str(exc) or type(exc).__name__


def _check_head(
    path: Path, check: Verification, key: bytes | None, head: _Head | str | None, named: str | None
) -> None:
    """Hold the chain to its head; a head missing, unreadable or unsigned is a finding."""
    where = head_path(path)
    if head is None and _is_rotated(path):
        # a rotated file has no head: the next file's snapshot names its last line
        check.notes.append(
            f"{path.name} is a rotated file: the next file's snapshot vouches for its end "
            "(`audit verify --series` checks each link)"
        )
        return
    if head is None:
        if check.lines:
            check.unguarded = f"{where} is missing: lines cut from the end would not show"
        return
    if isinstance(head, str):
        # written by rename, a head is never torn by a crash: this one was changed
        check.unguarded = f"{where} is corrupt ({head}): lines cut from the end would not show"
        return
    seq, digest = head.seq, head.digest
    if seq > check.last_seq:
        check.first_bad = check.lines + 1
        check.problem = (
            f"lines {check.lines + 1}..{seq - check.first_seq + 1} were removed from the end"
        )
    elif seq >= check.first_seq and named != digest:
        check.first_bad = seq - check.first_seq + 1
        check.problem = "the line the head records was replaced"
    elif 1 <= seq < check.first_seq and (seq != check.first_seq - 1 or digest != check.first_prev):
        # a head one line behind the snapshot is a crash between rotating and writing it
        check.first_bad = 1
        check.problem = "the head names a line this file does not follow"
    elif (
        key is not None
        and check.keyed_from is not None
        and seq - check.first_seq + 1 >= check.keyed_from
        and head.sig != head_signature(seq, digest, key)
    ):
        check.unguarded = (
            f"{where} is not signed with the key: it may have been rewritten "
            "to hide lines cut from the end"
        )


def _check_anchor(
    anchor: Path, check: Verification, expected: dict[int, str], seen: dict[int, str]
) -> None:
    """Hold the chain to its anchor; an anchor that vouches stands in for a lost head.
    Lines before this file's first (rotated away) are the earlier files' to answer for."""
    for seq in sorted(s for s in expected if check.first_seq <= s <= check.last_seq):
        if seen.get(seq) != expected[seq]:
            check.first_bad = seq - check.first_seq + 1
            check.problem = "not the line the anchor recorded: edited and re-hashed, or replaced"
            return
    top = max(expected, default=0)
    if top > check.last_seq:
        check.first_bad = check.lines + 1
        check.problem = (
            f"lines {check.lines + 1}..{top - check.first_seq + 1} were removed from the end "
            "(the anchor recorded them)"
        )
        return
    if check.unguarded is not None and top:
        check.notes.append(f"{check.unguarded}; the anchor {anchor} vouches for lines 1..{top}")
        check.unguarded = None


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete line of an audit file, as dicts (no verification). A last line
    without its newline is a write in progress (or one a crash tore): not yet a record."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if not line.endswith("\n"):
                return
            if line.strip():
                yield json.loads(line)


def _is_rotated(path: Path) -> bool:
    """``<log>.<n>``: a file rotation closed."""
    stem, _, number = path.name.rpartition(".")
    return bool(stem) and number.isdigit()


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
