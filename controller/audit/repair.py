"""``remediator audit repair``: carry on from the last good line of a broken log.

Moving a broken log aside would reset every cooldown, budget and breaker with it. A
repair keeps the valid prefix (the memory), moves everything from the first bad line on
to ``<log>.broken-<time>`` byte for byte (never deleted), and appends a ``repair`` line
chained on from the prefix: the first bad line, the problem, where the rest went, who
and when. ``audit verify`` then passes and shows the repair. A log that is whole but
whose end nothing guards (its head lost or unsigned) is accepted as it stands, on the
record, the same way. A ``repair`` line names no policy: replay passes over it.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.audit.anchor import append_anchor
from controller.audit.chain import verify
from controller.audit.log import AuditKeyError, AuditLog, check_file_text, write_head


@dataclass(frozen=True)
class Repaired:
    """What a repair did."""

    kept: int  # lines of the valid prefix, kept in place
    first_bad: int | None  # the first bad line (None: the chain was whole, its head was not)
    problem: str
    moved_to: Path | None  # where the lines from first_bad on went, byte for byte
    moved_lines: int
    seq: int  # the repair line's own seq


def repair(
    path: Path,
    *,
    key: bytes | None = None,
    anchor: Path | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> Repaired | None:
    """Repair ``path`` as the module says; None when there is nothing to repair.
    Raises AuditLocked while a controller writes it, AuditKeyError without its key."""
    now = now or datetime.now(UTC)
    log = AuditLog(path, key=key, anchor=anchor)
    log.lock()
    try:
        raw = path.read_text(encoding="utf-8")
        check = check_file_text(path, raw, key=key, anchor=anchor)
        if check.keyed_from is not None and key is None:
            raise AuditKeyError(f"{path}: the log is keyed: give the key it was written with")
        if check.first_bad is not None and check.first_bad == check.keyed_from:
            raise AuditKeyError(
                f"{path}:{check.first_bad}: the first keyed line fails its MAC: is this the "
                "key it was written with? (a repair would set the whole keyed part aside)"
            )
        if check.trusted:
            return None
        lines = raw.splitlines(keepends=True)
        bad = check.first_bad
        keep = bad - 1 if bad is not None and bad <= len(lines) else check.lines
        kept = "".join(lines[:keep])
        rest = raw[len(kept) :]
        moved_to = _set_aside(path, rest.encode("utf-8"), now) if rest else None
        prefix = verify(lines[:keep], key=key, keep=False)
        with path.open("r+b") as file:
            file.truncate(len(kept.encode("utf-8")))
            file.flush()
            os.fsync(file.fileno())
        write_head(path, prefix.lines, prefix.last_hash, key)
        if anchor is not None:
            append_anchor(anchor, prefix.lines, prefix.last_hash, cut=True)
        problem = str(check.problem if bad is not None else check.unguarded)
        moved = len(lines) - keep
        log.open(accept_unguarded=True)
        seq = log.append_fields(_line(now, by or _who(), keep, bad, problem, moved_to, moved))
        return Repaired(keep, bad, problem, moved_to, moved, seq)
    finally:
        log.close()


def _line(
    now: datetime,
    by: str,
    kept: int,
    bad: int | None,
    problem: str | None,
    moved_to: Path | None,
    moved: int,
) -> dict[str, Any]:
    where = f"lines {kept + 1}..{kept + moved} moved to {moved_to.name}" if moved_to else None
    reason = "; ".join(
        part
        for part in (
            f"chain broken at line {bad}: {problem}" if bad is not None else problem,
            where,
            f"carried on from line {kept}" if bad is not None else f"accepted at {kept} lines",
        )
        if part
    )
    return {
        "ts": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "kind": "repair",
        "reason": reason,
        "repair": {
            "first_bad": bad,
            "problem": problem,
            "kept": kept,
            "moved_to": moved_to.name if moved_to else None,
            "moved_lines": moved,
            "by": by,
        },
    }


def _set_aside(path: Path, data: bytes, now: datetime) -> Path:
    """Write ``data`` to a new ``<log>.broken-<time>[-n]`` file, fsynced; never over one."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        aside = path.with_name(f"{path.name}.broken-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            with aside.open("xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except FileExistsError:
            continue
        return aside
    raise FileExistsError(f"{path}: too many broken-{stamp} files")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
