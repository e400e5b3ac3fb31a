"""One writer per audit log: an exclusive, non-blocking ``flock`` on ``<log>.lock``.

Two writers on one file would interleave two chains and break it; the second is refused
at once, naming the file and the holder's pid, before it reads or writes a byte of the
log. Readers (``audit show``, ``audit verify``, ``report``) take no lock.

The lock file is never deleted (deleting it would let a third writer lock a new file
while the second still holds the old one); the kernel drops the lock when its holder
exits, however it exits.

With shards, each partition's log is written by the replica whose lease holds the
partition, and this lock is the second fence: a new owner that finds the lock held (an
old owner paused, or finishing an action) waits and tries again. On a shared directory
the lock must reach every host: an Azure Files SMB share mounted by Linux maps ``flock``
to SMB byte-range locks the server enforces (never mount it with ``nobrl``, which keeps
locks local). A file system that refuses to lock is recorded in the notes; for a
partition's log it is refused (see :mod:`controller.audit.partitions`).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path


class AuditLocked(Exception):
    """Another writer holds the audit log."""

    def __init__(self, log: Path, lock: Path, holder: str | None) -> None:
        self.log, self.lock, self.holder = log, lock, holder
        who = f"pid {holder}" if holder else "another process"
        super().__init__(
            f"{log}: the audit log is held by {who} (lock {lock}); "
            "one writer per audit log (each replica its own auditPath; a partition's "
            "log, its lease owner alone)"
        )


def lock_path(log: Path) -> Path:
    return log.with_name(log.name + ".lock")


class WriterLock:
    """The exclusive lock on one audit log, held until :meth:`release` or exit."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.path = lock_path(log)
        self._fd: int | None = None
        self.unsupported: str | None = None  # why this file system could not be locked

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AuditLocked` at once; then record who holds it."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", errors="replace").split()
            os.close(fd)
            raise AuditLocked(self.log, self.path, " on ".join(holder[:2]) or None) from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system that cannot lock
            self.unsupported = (
                f"{self.path}: this file system cannot lock ({exc.strerror}): "
                "one writer per audit log is the operator's job here"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            if self.unsupported is None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
