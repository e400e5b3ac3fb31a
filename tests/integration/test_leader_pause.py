"""A leader paused (SIGSTOP) and resumed (SIGCONT): two elector processes on Azurite.

Real time, as leases live in the storage service's: about twenty seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azurite import azurite, azurite_binary

pytestmark = pytest.mark.skipif(
    azurite_binary() is None and not os.environ.get("CI"),
    reason="azurite-blob is not installed (make tools)",
)
LEASE, RETRY = 15.0, 0.5  # the replicas' timing (tests/replica.py): Azurite's shortest lease


class Replica:
    """``python -m tests.replica`` as a process; ``role`` is the last role it reported."""

    def __init__(self, connection_string: str, identity: str) -> None:
        self.identity = identity
        self.role: str | None = None
        self.reports: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.replica", connection_string, "paused", identity],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "REMEDIATOR_LOG_LEVEL": "warning"},
        )
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # a role every 50 ms, between its log lines
            if line.strip() in ("leader", "standby"):
                self.role = line.strip()
                self.reports.append((time.monotonic(), self.role))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(timeout=10)


def until(condition: object, seconds: float) -> float:
    """Wait for ``condition()`` (a few ms apart); return when it held, or fail."""
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    with azurite(tmp_path / "azurite") as connection_string:
        a = Replica(connection_string, "a")
        until(lambda: a.role == "leader", 30)
        b = Replica(connection_string, "b")
        until(lambda: b.role == "standby", 30)
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()


@pytest.mark.parametrize("pause", [12.0, 17.0], ids=["past-renew-deadline", "past-lease"])
def test_after_a_pause_one_replica_leads_within_lease_and_retry(
    replicas: tuple[Replica, Replica], pause: float
) -> None:
    """The leader is stopped past its renew deadline (its lease still held), or past its
    lease (the other takes it); after SIGCONT one replica leads within lease + one retry
    period, and once it runs again the paused one never leads alongside the other."""
    a, b = replicas
    a.proc.send_signal(signal.SIGSTOP)
    time.sleep(pause)
    said_before = len(a.reports)
    a.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    until(lambda: len(a.reports) > said_before, 5)  # it runs again, and says what it is
    led = until(lambda: (a.role == "leader") != (b.role == "leader"), LEASE + RETRY)
    assert led - resumed <= LEASE + RETRY
    time.sleep(4 * RETRY)  # and it stays that way
    assert (a.role == "leader") != (b.role == "leader")
    awake = [t for t, _ in a.reports[said_before:]]
    both = [t for t in awake if role_at(a, t) == "leader" and role_at(b, t) == "leader"]
    assert not both, "two leaders at once"


def role_at(replica: Replica, at: float) -> str | None:
    seen = [role for t, role in replica.reports if t <= at]
    return seen[-1] if seen else None
