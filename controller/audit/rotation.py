"""Rotating the audit log, so a start reads one bounded file and not the whole history.

When the active file passes ``max_bytes`` or ``max_age`` (measured on the lines' own
timestamps), it is closed as ``<log>.<n>`` (n = 1, 2, 3 … in order; a rotated file is
never renamed again) and a new active file starts with a snapshot of the memory (see
:mod:`controller.audit.snapshot`). The chain runs on across files: the snapshot's
``prev`` is the previous file's last hash and its ``seq`` follows on.

The switch is crash-safe: the new file is written and fsynced as ``<log>.next`` first,
then the old file is renamed away and ``<log>.next`` takes its place. A crash before the
first rename leaves the old file active (``<log>.next`` is dropped and the rotation
happens again); a crash between the two renames is finished at the next open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from controller.audit.snapshot import Retention

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Rotation:
    """When the active file is closed and a new one started."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: timedelta = timedelta(days=1)
    retention: Retention = field(default_factory=Retention)

    def due(self, size: int, started: datetime | None, now: datetime, tail: int) -> bool:
        """Whether a file of ``size`` bytes begun at ``started`` is due, with ``tail`` lines
        after its snapshot (a file holding only its snapshot is never rotated again)."""
        if tail < 1:
            return False
        return size >= self.max_bytes or (started is not None and now - started >= self.max_age)


def next_path(path: Path) -> Path:
    """``<log>.next``: the new active file while a rotation is under way."""
    return path.with_name(path.name + ".next")


def rotated(path: Path) -> list[Path]:
    """The rotated files of ``path``, oldest first."""
    prefix = path.name + "."
    numbered = []
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            suffix = entry.name.removeprefix(prefix)
            if entry.name.startswith(prefix) and suffix.isdigit():
                numbered.append((int(suffix), entry))
    return [entry for _, entry in sorted(numbered)]


def series(path: Path) -> list[Path]:
    """Every file of the log in order: the rotated ones, then the active one."""
    return rotated(path) + ([path] if path.exists() else [])


def rotate(path: Path, first_line: str) -> Path:
    """Close ``path`` as ``<log>.<n>`` and start it again holding ``first_line``.

    Returns the rotated file's path. Raises OSError with ``path`` still the active file
    (holding everything it held) unless the switch completed.
    """
    fresh = next_path(path)
    with fresh.open("w", encoding="utf-8") as file:
        file.write(first_line)
        file.flush()
        os.fsync(file.fileno())
    done = rotated(path)
    number = int(done[-1].name.rsplit(".", 1)[1]) + 1 if done else 1
    old = path.with_name(f"{path.name}.{number}")
    os.rename(path, old)
    try:
        os.replace(fresh, path)
    except OSError:
        os.rename(old, path)
        raise
    _sync_dir(path.parent)
    return old


def finish_interrupted(path: Path) -> None:
    """Complete, or drop, a rotation a crash cut short (see the module)."""
    fresh = next_path(path)
    if not fresh.exists():
        return
    if path.exists():
        fresh.unlink()  # the old file was not moved: it is still the whole truth
    else:
        os.replace(fresh, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make the renames durable (a no-op where directories cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
