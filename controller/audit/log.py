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
cut from its end (``remediator audit repair`` accepts it, on the record).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, field_serializer

from controller.audit.anchor import anchor_problem, append_anchor, read_anchor
from controller.audit.chain import GENESIS, Verification, line_hash, seal, verify
from controller.audit.lock import WriterLock

Kind = Literal[
    "decision", "intent", "result", "verdict", "verification", "escalation", "approval", "repair"
]


class Record(BaseModel):
    """One decision, intent, result or change of verdict for one target.

    ``kind``: ``decision`` — a denial, or a dry-run would-run, complete in itself;
    ``intent`` — written before a live action runs; ``result`` — its outcome, with
    ``intent`` naming the intent's ``seq``; ``verdict`` — an objective changed state or
    the reason for doing nothing changed; ``verification`` — an action judged after it
    settled (``efficacy``); ``escalation`` — something a human must look at;
    ``approval`` — an operator's answer to a ``pending-approval`` decision.
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
        return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AuditUnavailable(Exception):
    """The audit log cannot be written: nothing may run until it can."""


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
    """The file sink. Opening it verifies the chain and sets aside a torn last line."""

    def __init__(
        self,
        path: str | Path,
        on_write: Callable[[float | None], None] | None = None,
        *,
        key: bytes | None = None,
        anchor: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_write = on_write  # told each write's duration (None: it failed), for metrics
        self.key = key  # seal lines with HMAC-SHA256 (None: plain SHA-256)
        self.anchor = anchor  # copy each line's (seq, hash) here: other storage
        self.notes: list[str] = []  # what open found worth a warning
        self._lock = WriterLock(self.path)
        self.records: list[dict[str, Any]] = []  # what was there at open, verified
        self.torn_to: Path | None = None  # where a torn last line was set aside
        self._file: IO[str] | None = None
        self._seq = 0
        self._prev = GENESIS
        self._failure: str | None = None  # the last write's error, until a write succeeds

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
            raw = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            check = check_file_text(self.path, raw, key=self.key, anchor=self.anchor)
            self._refuse_unless_trusted(check, accept_unguarded)
            if check.torn is not None:
                self._set_aside(raw, check.torn)
            self.records = check.records
            self._seq, self._prev = check.lines, check.last_hash
            self._file = self.path.open("a", encoding="utf-8")
            self._settle_head_and_anchor()
        except BaseException:
            self.close()
            raise

    def lock(self) -> None:
        """Become the log's one writer, or raise AuditLocked at once."""
        self._lock.acquire()

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

    def _set_aside(self, raw: str, torn: str) -> None:
        """Move a torn last line to ``<log>.torn`` and cut it from the log; lose nothing."""
        self.torn_to = self.path.with_name(self.path.name + ".torn")
        with self.torn_to.open("a", encoding="utf-8") as aside:
            aside.write(torn if torn.endswith("\n") else torn + "\n")
            aside.flush()
            os.fsync(aside.fileno())
        good = raw[: len(raw) - len(torn)]
        with self.path.open("r+", encoding="utf-8") as file:
            file.truncate(len(good.encode("utf-8")))
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
        if self._file is None:
            raise AuditUnavailable(f"{self.path}: the audit log is not open")
        sealed = seal(fields, self._seq + 1, self._prev, self.key)
        started = time.perf_counter()
        try:
            self._file.write(json.dumps(sealed, ensure_ascii=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except (OSError, ValueError) as exc:
            self._failure = f"{self.path}: cannot write the audit log: {exc}"
            self._tell(None)
            raise AuditUnavailable(self._failure) from exc
        self._seq, self._prev = sealed["seq"], sealed["hash"]
        try:
            self._write_head()
            self._write_anchor()
        except AuditUnavailable:
            self._tell(None)
            raise
        self._failure = None
        self._tell(time.perf_counter() - started)
        return self._seq

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
    path: str | Path, *, key: bytes | None = None, anchor: Path | None = None
) -> Verification:
    """Verify an audit file, its head and (if given) its anchor: any edit, deletion,
    insertion, reordering or cut; with the key, any re-hashing too."""
    path = Path(path)
    return check_file_text(path, path.read_text(encoding="utf-8"), key=key, anchor=anchor)


def check_file_text(
    path: Path, raw: str, *, key: bytes | None = None, anchor: Path | None = None
) -> Verification:
    check = verify(raw.splitlines(keepends=True), key=key)
    if not check.ok:
        return check
    _check_head(path, check, key)
    if check.ok and anchor is not None:
        _check_anchor(anchor, check)
    if check.ok and key is not None and check.lines and check.keyed_from is None:
        check.unguarded = check.unguarded or (
            "a key is given but no line is sealed with it: anyone could have written or "
            "re-hashed this log (`remediator audit repair` seals it from here on, on the record)"
        )
    return check


def _check_head(path: Path, check: Verification, key: bytes | None) -> None:
    """Hold the chain to its head; a head missing, unreadable or unsigned is a finding."""
    head = head_path(path)
    try:
        recorded = json.loads(head.read_text(encoding="utf-8"))
        seq, digest = int(recorded["seq"]), str(recorded["hash"])
    except FileNotFoundError:
        if check.lines:
            check.unguarded = f"{head} is missing: lines cut from the end would not show"
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # written by rename, a head is never torn by a crash: this one was changed
        check.unguarded = f"{head} is corrupt ({exc}): lines cut from the end would not show"
        return
    if seq > check.lines:
        check.first_bad = check.lines + 1
        check.problem = f"lines {check.lines + 1}..{seq} were removed from the end"
    elif seq >= 1 and check.records and check.records[seq - 1]["hash"] != digest:
        check.first_bad = seq
        check.problem = "the line the head records was replaced"
    elif key is not None and check.keyed_from is not None and seq >= check.keyed_from:
        sig = recorded.get("sig") if isinstance(recorded, dict) else None
        if not isinstance(sig, str) or sig != head_signature(seq, digest, key):
            check.unguarded = (
                f"{head} is not signed with the key: it may have been rewritten "
                "to hide lines cut from the end"
            )


def _check_anchor(anchor: Path, check: Verification) -> None:
    """Hold the chain to its anchor; an anchor that vouches stands in for a lost head."""
    expected = read_anchor(anchor)  # raises AnchorUnreadable
    if expected is None:
        return
    found = anchor_problem(expected, [str(r["hash"]) for r in check.records])
    if found is not None:
        check.first_bad, check.problem = found
        return
    top = max(expected, default=0)
    if check.unguarded is not None and top:
        check.notes.append(f"{check.unguarded}; the anchor {anchor} vouches for lines 1..{top}")
        check.unguarded = None


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete line of an audit file, as dicts (no verification)."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)
