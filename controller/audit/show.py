"""Reading the audit log for people: filter records, and follow the file as it grows.

Reading never verifies the chain (``remediator audit verify`` does) and never fails on
a line a crash left half-written: a torn last line is left for the next poll, which
sees it completed or not at all; a complete line that does not parse is reported and
skipped. Following carries on across a rotation: the rest of the rotated file, then the
new file (another inode) from its start, its snapshot line first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from controller.audit.chain import SNAPSHOT
from controller.audit.log import WALL_TS, Kind
from controller.audit.rotation import rotated
from controller.durations import parse_duration

KINDS: tuple[str, ...] = (*get_args(Kind), SNAPSHOT)  # a snapshot heads a rotated-in file


@dataclass(frozen=True)
class RecordFilter:
    """Which records to show; every given condition must hold."""

    policy: str | None = None
    target: str | None = None  # a substring of the resource ID, any case (ARM IDs are)
    since: datetime | None = None
    kinds: frozenset[str] | None = None

    def __call__(self, record: dict[str, Any]) -> bool:
        if self.policy is not None and record.get("policy") != self.policy:
            return False
        if (
            self.target is not None
            and self.target.casefold() not in str(record.get("target", "")).casefold()
        ):
            return False
        if self.kinds is not None and record.get("kind", "decision") not in self.kinds:
            return False
        if self.since is not None:
            ts = written_time(record)
            if ts is None or ts < self.since:
                return False
        return True


def parse_since(text: str, now: datetime) -> datetime:
    """``30m`` (that long before ``now``) or a timestamp (UTC unless it says otherwise)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a duration (30m, 2h) or a time (2026-01-01T00:00Z), got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_kinds(text: str) -> frozenset[str]:
    """``intent,result`` → those kinds; an unknown one is named."""
    kinds = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(kinds - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown kind {', '.join(unknown) or text!r}: one of {', '.join(KINDS)}")
    return kinds


def record_time(record: dict[str, Any], key: str = "ts") -> datetime | None:
    """The line's ``ts``: the controller's clock (a scenario's, against an emulator)."""
    try:
        ts = datetime.fromisoformat(str(record[key]))
    except (KeyError, ValueError):
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def written_time(record: dict[str, Any]) -> datetime | None:
    """When the line was written, in wall time: ``wall_ts`` where a scenario clock set
    ``ts``, else ``ts`` (the controller's clock is the wall's)."""
    return record_time(record, WALL_TS) if WALL_TS in record else record_time(record)


class Tail:
    """Complete lines of a file from where the last read stopped; survives truncation."""

    def __init__(self, path: Path, on_bad: Callable[[str], None]) -> None:
        self.path = path
        self.offset = 0
        self.line = 0  # lines consumed, to name a bad one
        self.bad = 0  # complete lines that were not records: the log needs a look
        self.inode: int | None = None  # the file read last (rotation starts a new one)
        self._on_bad = on_bad

    def read(self) -> list[dict[str, Any]]:
        """Records appended since the last read; a torn last line waits for the next one."""
        try:
            with self.path.open("rb") as file:
                inode = os.fstat(file.fileno()).st_ino
                ended = self._rest_of_rotated(inode)
                if file.seek(0, 2) < self.offset or inode != self.inode:
                    self.offset = self.line = 0  # truncated, or rotated: a new file
                self.inode = inode
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return []
        return ended + self._complete(data)

    def _rest_of_rotated(self, inode: int) -> list[dict[str, Any]]:
        """What the file read last got after that read, before it was rotated away."""
        if self.inode is None or inode == self.inode:
            return []
        for old in reversed(rotated(self.path)):
            with old.open("rb") as file:
                if os.fstat(file.fileno()).st_ino == self.inode:
                    file.seek(self.offset)
                    return self._complete(file.read())
        return []

    def _complete(self, data: bytes) -> list[dict[str, Any]]:
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return list(self._parse(complete.decode("utf-8", errors="replace").splitlines()))

    def _parse(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        for text in lines:
            self.line += 1
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                self._skip(f"not JSON: {exc.msg}")
                continue
            if isinstance(record, dict):
                yield record
            else:
                self._skip("not a record")

    def _skip(self, why: str) -> None:
        self.bad += 1
        self._on_bad(f"{self.path}:{self.line}: skipped, {why}; see `remediator audit verify`")


def follow(
    tail: Tail,
    keep: Callable[[dict[str, Any]], bool],
    emit: Callable[[dict[str, Any]], None],
    *,
    stopped: Callable[[], bool],
    poll: float = 0.25,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Emit matching records as the file grows, every ``poll`` seconds, until ``stopped()``.

    Polling rather than inotify: it works the same on every platform and on network
    shares, and a quarter second is quick enough for a person watching. Returns how
    many records were emitted.
    """
    shown = 0
    while True:
        for record in tail.read():
            if keep(record):
                emit(record)
                shown += 1
        if stopped():
            return shown
        sleep(poll)
