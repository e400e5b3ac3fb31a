"""Append-only JSON-lines audit log.

Each line is one :class:`Record`, flushed as it is written so a crash loses nothing
already decided. The fields listed on :class:`Record` are a stable contract: later
versions add fields, never remove or rename these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from pydantic import BaseModel, ConfigDict, field_serializer


class Record(BaseModel):
    """One decision (or a change of verdict) for one target."""

    model_config = ConfigDict(frozen=True)
    ts: datetime
    policy: str
    target: str
    verdict: str  # the worst objective state: breach > unknown > recovering > ok
    verdicts: list[dict[str, Any]]
    action: str | None
    params: dict[str, Any]
    decision: str | None  # allow | deny; null when no action was proposed
    reason: str
    guard: str | None = None
    mode: str
    outcome: str | None  # succeeded | failed | would-run; null when nothing ran
    before: dict[str, Any]
    after: dict[str, Any]
    reconcile_id: str

    @field_serializer("ts")
    def _rfc3339(self, ts: datetime) -> str:
        return ts.isoformat().replace("+00:00", "Z")


class AuditSink(Protocol):
    """Where records go: the file in production, a list for previews and tests."""

    def append(self, record: Record) -> None: ...


class MemoryAudit:
    """Keeps records in memory: ``remediator plan`` previews must not become history."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def append(self, record: Record) -> None:
        self.records.append(record)


class AuditLog:
    """Appends records to a file, creating its folder on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def __enter__(self) -> AuditLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: Record) -> None:
        if self._file is None:
            self.__enter__()
        assert self._file is not None
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def writable(self) -> bool:
        return self._file is not None and not self._file.closed


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete line of an audit file, as dicts."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)
