"""The replay's schedule: every target's passes in the order the loop runs them, with
quiet passes accounted for without running them.

**The schedule.** With no jitter, and passes that take no virtual time, the controller's
:class:`~controller.loop.Loop` runs each target at start, start + interval, … and the
targets due at one instant in the order they went to sleep; a failed pass backs off.
This runs that schedule from a heap, one pass after another, without waking a task on
the event loop for each (which cost a replay more than the passes themselves).

**Quiet passes.** Most of any history is healthy. A target whose last pass found every
objective ok, with no action, verification or interrupted action in flight, does
nothing on its next pass unless a signal moves out of line or a step-back timer changes
its answer. A pass is quiet when

* each objective's newest point is fresh and meets the objective (what
  :func:`~controller.core.evaluate.evaluate` judges ok after an ok), and
* :meth:`~controller.reconcile.Reconciler.holding` gives the reason the last pass gave
  (nothing new to log), or, once a step back is due,
  :meth:`~controller.reconcile.Reconciler.stepping_back` projects from the window's
  worst values to the same hold (a target kept at its busy size by its load).

A quiet pass writes nothing and changes no memory; it only reports its state to the
fleet (fail static counts every target's latest state). It also leaves the replay's own
Prometheus gauges and counters alone: a backtest does not export them. Nothing else
changes a target's memory or size between its own passes, so a run of quiet passes is
worked out ahead in one scan of the history (:meth:`Resting.scan`), and the fleet is
told of each as its time comes. Anything else runs the full pass.
``tests/unit/test_backtest_quiet.py`` replays histories both ways and compares every
audit line and chart.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import structlog

from controller.backtest.simulator import Reading, ReplaySource
from controller.core.plan import NoProposal, nothing_to_do
from controller.core.step_back import AT_BASELINE, when_due_changes
from controller.fleet import Fleet
from controller.loop import backoff
from controller.model import Verdict, VerdictState
from controller.reconcile import PassResult, Reconciler, most_severe

log = structlog.get_logger("remediator.backtest")

BACKOFF_MAX = timedelta(minutes=10)  # the loop's default
_OK = VerdictState.OK  # an enum member's lookup shows in a replay's profile

# one objective's state and value as a pass saw them (value None: unknown)
Seen = tuple[VerdictState, float | None]


class Trace:
    """What one target's passes saw, column by column (a week of a fleet is millions of
    passes): when, each objective's state and value, and the most severe state."""

    def __init__(self, objectives: int) -> None:
        self.times: list[datetime] = []
        self.states: list[list[VerdictState]] = [[] for _ in range(objectives)]
        self.values: list[list[float | None]] = [[] for _ in range(objectives)]
        self.worst: list[VerdictState] = []

    def add(self, ts: datetime, seen: Sequence[Seen]) -> None:
        self.times.append(ts)
        for states, values, (state, value) in zip(self.states, self.values, seen, strict=True):
            states.append(state)
            values.append(value)
        self.worst.append(most_severe(state for state, _ in seen))

    def add_ok(self, ts: datetime, values: Sequence[float]) -> None:
        """A quiet pass: every objective ok."""
        self.times.append(ts)
        for column, states, value in zip(self.values, self.states, values, strict=True):
            states.append(_OK)
            column.append(value)
        self.worst.append(_OK)


class ReplayClock:
    """Time the schedule sets; a pass that waits (a retry's backoff) moves it on."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def move_to(self, when: datetime) -> None:
        self._now = max(self._now, when)

    async def sleep(self, seconds: float) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))
        await anyio.lowlevel.checkpoint()


@dataclass
class Counts:
    """How the passes were run: in full, or accounted for as quiet."""

    full: int = 0
    quiet: int = 0


async def run_schedule(
    reconcilers: Sequence[Reconciler],
    clock: ReplayClock,
    source: ReplaySource,
    fleet: Fleet,
    end: datetime,
    interval: timedelta,
    *,
    quiet: bool = True,
) -> tuple[dict[str, Trace], Counts]:
    """Run every target's passes from the clock's time to ``end`` (inclusive)."""
    traces = {r.policy.name: Trace(len(r.policy.objectives)) for r in reconcilers}
    counts = Counts()
    order = itertools.count()
    heap = [(clock.now(), next(order), i) for i in range(len(reconcilers))]
    resting: list[Resting | None] = [None] * len(reconcilers)  # after a quiet-able pass
    quiet_until: list[datetime | None] = [None] * len(reconcilers)  # the last worked out
    failures = [0] * len(reconcilers)
    for reconciler in reconcilers:
        reconciler.register()
    while heap and heap[0][0] <= end:
        due, _, i = heapq.heappop(heap)
        clock.move_to(due)
        reconciler = reconcilers[i]
        every = reconciler.policy.interval or interval
        rest = resting[i]
        if rest is not None:  # the stretch it starts ends before a pass that is not quiet
            quiet_until[i] = rest.scan(source, due, every, end, traces[reconciler.policy.name])
            resting[i] = None
        until = quiet_until[i]
        if until is not None and due <= until:
            counts.quiet += 1
            # what the full pass would tell the fleet: ok, backend not failing
            alarm = fleet.note(reconciler.policy.target.resource_id, _OK, False, due)
            if alarm is not None:
                raise RuntimeError(f"a quiet pass engaged fail static: {alarm}")
        else:
            try:
                result = await reconciler.reconcile()
            except Exception as exc:  # as the loop: the target backs off, the rest go on
                failures[i] += 1
                resting[i] = None
                log.warning("replayed pass failed", policy=reconciler.policy.name, error=repr(exc))
                retry = due + backoff(failures[i], every, BACKOFF_MAX)
                heapq.heappush(heap, (retry, next(order), i))
                continue
            failures[i] = 0
            counts.full += 1
            resting[i] = Resting.after(reconciler, result, source) if quiet else None
            traces[reconciler.policy.name].add(due, _seen(reconciler, result))
        heapq.heappush(heap, (due + every, next(order), i))
    return traces, counts


@dataclass(frozen=True)
class Resting:
    """A target whose last full pass found every objective ok and did nothing."""

    reconciler: Reconciler
    last: PassResult
    idle: NoProposal  # why that pass had nothing to fix
    readings: tuple[Reading, ...]  # how each objective is read, in the policy's order

    @classmethod
    def after(
        cls, reconciler: Reconciler, result: PassResult, source: ReplaySource
    ) -> Resting | None:
        """The target at rest after ``result``, or None when it is not."""
        if (
            reconciler.open_intents
            or reconciler.memory.pending is not None
            or result.decision is not None
            or result.outcome is not None
            or result.efficacy is not None
            or not result.verdicts
            or any(v.state is not _OK for v in result.verdicts)
        ):
            return None
        policy = reconciler.policy
        idle = nothing_to_do(policy, result.verdicts)
        if idle is None or idle.needs_human:
            return None
        readings = tuple(source.reading(policy.target, o) for o in policy.objectives)
        return cls(reconciler, result, idle, readings)

    def scan(
        self,
        source: ReplaySource,
        first: datetime,
        every: timedelta,
        end: datetime,
        trace: Trace,
    ) -> datetime | None:
        """Add to ``trace`` the quiet passes from ``first`` on, every ``every`` up to ``end``,
        until the first that is not (see the module's docstring), and return the time of
        the last (None: not even the first). Nothing else changes the target's memory or
        state meanwhile, so they can be worked out ahead, the fleet told as they come."""
        reconciler = self.reconciler
        policy, memory = reconciler.policy, reconciler.memory
        feeds = [source.feed(reading) for reading in self.readings]
        state = source.state(policy.target)
        last: datetime | None = None
        recheck: datetime | None = first  # when the hold's reason must be worked out again
        held: NoProposal | None = None
        projected: tuple[str | None, ...] | None = None  # worst values of the last projection
        now = first
        while now <= end:
            values = []
            for feed in feeds:
                value = feed.settled(now)
                if value is None:
                    return last
                values.append(value)
            if recheck is not None and now >= recheck:
                held = reconciler.holding(self.idle, self.last.verdicts, now)
                recheck = when_due_changes(policy, memory.ok_since, memory.history, now)
                projected = None
                if held is not None and held.reason != memory.last_reason:
                    return last
            if held is None:  # a step back is due: the pass projects from the worst values
                worst = tuple(feed.worst(now) for feed in feeds)
                key = tuple(None if w is None else w.hex() for w in worst)  # -0.0 is not 0.0
                if key != projected:
                    verdicts = tuple(
                        Verdict(r.objective.name, _OK, v, r.objective.threshold, "", w)
                        for r, v, w in zip(self.readings, values, worst, strict=True)
                    )
                    back = reconciler.stepping_back(self.idle, verdicts, state)
                    if (
                        not isinstance(back, NoProposal)  # it would step back
                        or back.reason.endswith(AT_BASELINE)  # it would remember the baseline
                        or back.reason != memory.last_reason
                    ):
                        return last
                    projected = key
            trace.add_ok(now, values)
            last = now
            now += every
        return last


def _seen(reconciler: Reconciler, result: PassResult) -> tuple[Seen, ...]:
    verdicts = {v.objective: v for v in result.verdicts}
    seen: list[Seen] = []
    for objective in reconciler.policy.objectives:
        verdict = verdicts.get(objective.name)
        if verdict is None or verdict.state is VerdictState.UNKNOWN:
            seen.append((VerdictState.UNKNOWN, None))
        else:
            seen.append((verdict.state, verdict.value))
    return tuple(seen)
