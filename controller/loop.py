"""The reconcile loop: one task per target on its interval, with jitter and backoff.

Like a controller-runtime reconciler, a pass either succeeds (next pass after the
interval, ± jitter) or raises (next pass after an exponential backoff, reset on the
next success). One target's failures never delay another's. All waiting goes
through the injected clock, so stopping is immediate and tests run on virtual time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
import anyio.abc
import structlog

from controller.clock import Clock
from controller.reconcile import PassResult, Reconciler
from controller.telemetry import Metrics

log = structlog.get_logger("remediator.loop")

BACKOFF_BASE = timedelta(seconds=5)


@dataclass
class LoopHealth:
    """Per target (by :attr:`Reconciler.key`): the last completed pass, the next one due,
    and its interval."""

    started: datetime | None = None
    last_tick: dict[str, datetime] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    due: dict[str, datetime] = field(default_factory=dict)
    intervals: dict[str, timedelta] = field(default_factory=dict)

    def stalled(self, now: datetime) -> list[str]:
        """Targets more than one of their own intervals past their next pass."""
        late = []
        for name, due in self.due.items():
            interval = self.intervals.get(name)
            if interval is not None and now - due > interval:
                late.append(name)
        return sorted(late)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


@dataclass(frozen=True)
class PassFailure:
    """A pass that could not finish (the resource unreadable, the audit unwritable …)."""

    policy: str
    error: str
    target: str = ""  # the resource, for a selector policy's many targets


def _ended(task: anyio.TaskHandle[None]) -> bool:
    return task.status not in (anyio.TaskHandle.Status.PENDING, anyio.TaskHandle.Status.CANCELLING)


def backoff(failures: int, interval: timedelta, cap: timedelta) -> timedelta:
    """5 s, 10 s, 20 s … after consecutive failures, never beyond ``cap`` (nor below zero)."""
    if failures <= 0:
        return interval
    delay: timedelta = BACKOFF_BASE * (2 ** min(failures - 1, 30))
    return min(cap, delay)


class Loop:
    """Runs every reconciler until cancelled."""

    def __init__(
        self,
        reconcilers: Sequence[Reconciler],
        clock: Clock,
        metrics: Metrics,
        *,
        interval: timedelta,
        jitter: float = 0.1,
        backoff_max: timedelta = timedelta(minutes=10),
        rng: random.Random | None = None,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self.reconcilers = list(reconcilers)
        self.health = LoopHealth()
        self._clock = clock
        self._metrics = metrics
        self._interval = interval
        self._jitter = jitter
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._on_pass = on_pass
        self._group: anyio.abc.TaskGroup | None = None
        # a target's running task (anyio's handle: its own cancel scope and end event, so
        # the loop keeps no second copy of either — ~2 KiB a target at 10,000 targets)
        self._tasks: dict[str, anyio.TaskHandle[None]] = {}
        self._current: dict[str, Reconciler] = {}  # the reconciler each key runs now
        self._retired: dict[str, anyio.TaskHandle[None]] = {}  # removed, maybe still ending

    def interval_of(self, reconciler: Reconciler) -> timedelta:
        return reconciler.policy.interval or self._interval

    async def run(self) -> None:
        """Run until the surrounding cancel scope is cancelled."""
        self.health.started = self._clock.now()
        async with anyio.create_task_group() as tg:
            self._group = tg
            self._start_all()  # in a frame of its own: none of them is held by this one
            try:
                await anyio.sleep_forever()  # targets come and go with policy reloads
            finally:
                self._group = None

    def _start_all(self) -> None:
        for reconciler in self.reconcilers:
            self._start(reconciler)

    def replace(self, reconcilers: Sequence[Reconciler]) -> None:
        """Swap in a new set of reconcilers: unchanged ones (the same object) keep running,
        removed or replaced ones stop (an action in flight finishes: it is shielded)."""
        wanted = {r.key: r for r in reconcilers}
        self._retired = {k: h for k, h in self._retired.items() if not _ended(h)}
        for old in self.reconcilers:
            if wanted.get(old.key) is not old:
                old.unregister()
                self._current.pop(old.key, None)
                task = self._tasks.pop(old.key, None)
                if task is not None:
                    task.cancel()
                    self._retired[old.key] = task
                health = self.health
                for table in (health.due, health.last_tick, health.failures, health.intervals):
                    table.pop(old.key, None)
        running = set(map(id, self.reconcilers))
        self.reconcilers = list(reconcilers)
        if self._group is not None:
            for reconciler in self.reconcilers:
                if id(reconciler) not in running:
                    self._start(reconciler)

    async def stopped(self, keys: Iterable[str]) -> None:
        """Wait until the removed targets ``keys`` have ended: an action in flight has
        finished and its result is written."""
        for key in keys:
            task = self._retired.get(key)
            if task is not None and key not in self._tasks:
                await task.wait()

    def _start(self, reconciler: Reconciler) -> None:
        assert self._group is not None
        name = reconciler.key
        reconciler.register()
        # the replaced task may be finishing a shielded action: its result must be in
        # memory before the new one decides anything
        previous = self._retired.pop(name, None)
        self._current[name] = reconciler
        self._tasks[name] = self._group.start_soon(self._target, reconciler, previous, name=name)

    async def run_once(self) -> list[PassResult | PassFailure]:
        """One pass of every target, one after another (``run --once``, ``plan``).

        Each target is also read once, so a wrong resource ID or a missing permission
        shows here rather than at the first breach.
        """
        self.health.started = self._clock.now()
        for reconciler in self.reconcilers:
            reconciler.register()
        results: list[PassResult | PassFailure] = []
        for reconciler in self.reconcilers:
            try:
                await reconciler.read_state()
            except Exception as exc:  # reported as the target's row
                results.append(
                    PassFailure(reconciler.policy.name, _describe(exc), reconciler.target)
                )
                continue
            results.append(await self._pass(reconciler))
        return results

    async def _target(
        self, reconciler: Reconciler, previous: anyio.TaskHandle[None] | None = None
    ) -> None:
        name = reconciler.key
        if previous is not None:
            # shielded: this task may be replaced or removed in turn while it waits, and
            # whatever follows it must still wait for the action in flight (through it)
            with anyio.CancelScope(shield=True):
                await previous.wait()
            # a finished handle's traceback holds its reconciler, and that one's previous:
            # dropped, or every reconciler a target ever had would stay in memory
            previous = None
            if self._current.get(name) is not reconciler:
                return  # replaced or removed while it waited: it never runs
        interval = self.interval_of(reconciler)
        self.health.intervals[name] = interval
        delay = interval * self._rng.uniform(0, self._jitter)
        while True:
            due = self._clock.now() + delay
            self.health.due[name] = due
            await self._clock.sleep(delay.total_seconds())
            lag = (self._clock.now() - due).total_seconds()
            self._metrics.loop_lag.set(max(lag, 0.0), reconciler.policy.name)
            await self._pass(reconciler)
            if self._current.get(name) is not reconciler:
                if name not in self._current:  # removed: leave no health entries behind
                    for table in (self.health.due, self.health.last_tick, self.health.failures):
                        table.pop(name, None)
                return  # replaced or removed while its pass ran (a shielded action)
            failures = self.health.failures.get(name, 0)
            if failures:
                delay = backoff(failures, interval, self._backoff_max)
            else:
                delay = interval * (1 + self._rng.uniform(-self._jitter, self._jitter))

    async def _pass(self, reconciler: Reconciler) -> PassResult | PassFailure:
        name, policy = reconciler.key, reconciler.policy.name  # metrics: per policy, bounded
        try:
            with self._metrics.reconcile_seconds.time():
                result = await reconciler.reconcile()
        except Exception as exc:  # any pass failure becomes backoff, never a dead loop
            failures = self.health.failures.get(name, 0) + 1
            self.health.failures[name] = failures
            self._metrics.reconciles.labels(policy, "error").inc()
            log.warning(
                "reconcile failed",
                policy=policy,
                target=reconciler.target,
                failures=failures,
                error=repr(exc),
            )
            return PassFailure(policy, _describe(exc), reconciler.target)
        self.health.failures[name] = 0
        now = self._clock.now()
        self.health.last_tick[name] = now
        self._metrics.reconciles.labels(policy, "ok").inc()
        # wall time, whatever the loop's clock: an alert compares it with Prometheus' time()
        self._metrics.last_pass.set_to_current_time()
        if self._on_pass is not None:
            self._on_pass(result)
        return result
