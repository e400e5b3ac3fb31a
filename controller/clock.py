"""Time, injected: the decision core never reads the system clock itself.

Three clocks share one Protocol:

* :class:`SystemClock` — wall time, for production.
* :class:`ScaledClock` — scenario time running ``speed`` times faster than wall time
  from a shared anchor, so an emulator and a controller in different processes agree
  on "now" (the emulator writes the anchor into the settings file it generates).
* :class:`VirtualClock` — time that moves only when a test (or the demo driver) says
  so; sleepers wake in deadline order as time is advanced.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import anyio


@runtime_checkable
class Clock(Protocol):
    """Where "now" comes from, and how to wait for a while of it."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time; cancellable like any anyio sleep."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        # anyio's own coroutine, not one wrapping it: a frame less for every sleeping target
        return anyio.sleep(max(0.0, seconds))


@dataclass(frozen=True)
class ScaledClock:
    """Scenario time = ``anchor_scenario + (wall - anchor_wall) * speed``."""

    anchor_wall: float
    anchor_scenario: datetime
    speed: float = 1.0

    @classmethod
    def starting_now(cls, scenario_start: datetime, speed: float) -> ScaledClock:
        return cls(anchor_wall=time.time(), anchor_scenario=scenario_start, speed=speed)

    def now(self) -> datetime:
        elapsed = (time.time() - self.anchor_wall) * self.speed
        return self.anchor_scenario + timedelta(seconds=elapsed)

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        return anyio.sleep(max(0.0, seconds) / self.speed)


@dataclass(order=True)
class _Sleeper:
    deadline: datetime
    seq: int
    event: anyio.Event = field(compare=False)


class VirtualClock:
    """A clock that only moves when :meth:`advance` or :meth:`run_until` is called.

    Sleepers are woken in deadline order, and each wake-up is given a few event-loop
    turns to run before time moves on, so tasks observe time the way they would in
    production, only without waiting for it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[_Sleeper] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self._now + timedelta(seconds=seconds), next(self._seq), anyio.Event())
        heapq.heappush(self._sleepers, sleeper)
        try:
            await sleeper.event.wait()
        finally:  # a cancelled sleeper leaves no trace
            if sleeper in self._sleepers:
                self._sleepers.remove(sleeper)
                heapq.heapify(self._sleepers)

    @property
    def pending(self) -> int:
        """How many sleepers are waiting."""
        return len(self._sleepers)

    async def settle(self, turns: int = 50) -> None:
        """Let woken tasks run until they block again (I/O-free work settles quickly)."""
        for _ in range(turns):
            await anyio.lowlevel.checkpoint()

    async def drive(
        self,
        until: datetime,
        sleepers: int,
        idle_timeout: float = 10.0,
        stop_when: Callable[[], bool] | None = None,
    ) -> None:
        """Run time to ``until`` as fast as the tasks allow.

        Time moves to the next deadline only once ``sleepers`` tasks are all asleep on
        this clock, so a task busy with real I/O (a loopback HTTP call) finishes its
        step before time moves on: the run is deterministic whatever the machine's speed.
        """
        while True:
            with anyio.fail_after(idle_timeout):
                while len(self._sleepers) < sleepers:
                    if stop_when is not None and stop_when():
                        return
                    await anyio.sleep(0.001)
            if not self._sleepers or self._sleepers[0].deadline > until:
                self._now = max(self._now, until)
                return
            sleeper = heapq.heappop(self._sleepers)
            self._now = max(self._now, sleeper.deadline)
            asleep = len(self._sleepers)
            sleeper.event.set()
            # let the woken task run; most go back to sleep within a few turns (work with
            # no I/O), and waiting the full settle for each would dominate long replays
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
                if len(self._sleepers) > asleep:
                    break

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way."""
        await self.run_until(self._now + timedelta(seconds=seconds))

    async def run_until(self, target: datetime) -> None:
        """Move time to ``target``, waking sleepers one deadline at a time."""
        await self.settle()
        while self._sleepers and self._sleepers[0].deadline <= target:
            sleeper = heapq.heappop(self._sleepers)
            self._now = max(self._now, sleeper.deadline)
            sleeper.event.set()
            await self.settle()
        self._now = max(self._now, target)
        await self.settle()
