"""The loop: one task per target, intervals with jitter, per-target backoff, instant stop."""

from __future__ import annotations

import gc
import itertools
import random
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta

import anyio
import pytest

from controller.audit.log import MemoryAudit
from controller.clock import VirtualClock
from controller.loop import Loop, backoff
from controller.model import (
    ContainerSize,
    Mode,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    ResourceState,
    Sample,
)
from controller.policy.schema import Objective, Policy, Target
from controller.reconcile import Reconciler
from controller.registry import Registry
from controller.telemetry import Metrics
from tests.conftest import APP_ID, START, make_policy

pytestmark = pytest.mark.anyio


class ConstantSignal:
    """A plug-in signal source: every objective reads ``value`` every minute."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls: list[tuple[str, datetime]] = []

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        return None

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        return None

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        self.calls.append((target.resource_id, now))
        minute = now.replace(second=0, microsecond=0)
        samples = tuple(Sample(minute - timedelta(minutes=k), self.value) for k in range(10, 0, -1))
        return {
            o.name: Observation(target.resource_id, "x", samples, Quality.GOOD, now)
            for o in objectives
        }


def registry(signal: ConstantSignal, broken: set[str]) -> tuple[Registry, list[str]]:
    reg = Registry()
    reg.add_signal("azureMonitor", signal)
    applied: list[str] = []

    @reg.reader("containerApp")
    async def read(target: Target) -> ResourceState:
        if target.resource_id in broken:
            raise ConnectionError("ARM unreachable")
        return ResourceState(target.resource_id, 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1")

    @reg.action("containerApp", "scaleOut")
    async def scale_out(target: Target, proposal: Proposal) -> Outcome:
        applied.append(target.resource_id)
        return Outcome(OutcomeKind.SUCCEEDED, proposal.before, proposal.after)

    return reg, applied


def policy(name: str) -> Policy:
    target = {"type": "containerApp", "resourceId": APP_ID.replace("agentstudio-api", name)}
    ladder = [{"scaleOut": {"step": 1, "maxReplicas": 4}}]
    return make_policy(metadata={"name": name}, target=target, remediation=ladder)


def make_loop(reg: Registry, clock: VirtualClock, *policies: Policy) -> Loop:
    metrics = Metrics()
    audit = MemoryAudit()
    reconcilers = [Reconciler(p, reg, clock, Mode.LIVE, audit, metrics) for p in policies]
    return Loop(
        reconcilers,
        clock,
        metrics,
        interval=timedelta(seconds=30),
        jitter=0.1,
        rng=random.Random(1),
    )


async def run_for(loop: Loop, clock: VirtualClock, minutes: float) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run)
        await clock.drive(clock.now() + timedelta(minutes=minutes), sleepers=len(loop.reconcilers))
        tg.cancel_scope.cancel()


def test_a_policy_needing_an_unregistered_plugin_is_refused() -> None:
    """A ladder step nobody can run is found before the loop starts, not mid-incident."""
    reg, _ = registry(ConstantSignal(1.0), set())
    assert reg.missing(make_policy()) == [
        "policy api-cpu: no action 'containerApp/scaleUp'",
    ]


def test_backoff_doubles_to_its_cap() -> None:
    """5 s, 10 s, 20 s … capped, after consecutive failures."""
    cap = timedelta(minutes=2)
    delays = [backoff(n, timedelta(seconds=30), cap).total_seconds() for n in range(1, 8)]
    assert delays == [5, 10, 20, 40, 80, 120, 120]


async def test_each_target_runs_on_its_interval_with_jitter(clock: VirtualClock) -> None:
    """Passes come every 30 s ± 10 %, starting within the first jitter window."""
    signal = ConstantSignal(10.0)
    reg, _ = registry(signal, set())
    loop = make_loop(reg, clock, policy("a"))
    await run_for(loop, clock, 10)
    times = [t for _, t in signal.calls]
    assert (times[0] - START).total_seconds() <= 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert 18 <= len(times) <= 22
    assert all(27 <= g <= 33 for g in gaps)
    assert len(set(gaps)) > 1  # jitter spreads them


async def test_one_failing_target_backs_off_without_slowing_the_other(clock: VirtualClock) -> None:
    """A target whose resource cannot be read backs off; its neighbour keeps its pace and acts."""
    signal = ConstantSignal(95.0)  # breach everywhere
    broken_id = policy("broken").target.resource_id
    reg, applied = registry(signal, {broken_id})
    loop = make_loop(reg, clock, policy("broken"), policy("healthy"))
    await run_for(loop, clock, 10)
    broken = [t for rid, t in signal.calls if rid == broken_id]
    healthy = [t for rid, t in signal.calls if rid != broken_id]
    gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(broken)]
    assert gaps[:5] == [5, 10, 20, 40, 80]
    assert len(healthy) >= 18
    assert loop.health.failures["broken"] >= 6
    assert loop.health.failures["healthy"] == 0
    assert applied and set(applied) == {policy("healthy").target.resource_id}


async def test_stop_is_immediate(clock: VirtualClock) -> None:
    """Cancelling the loop while every task sleeps ends it at once, leaving no sleeper."""
    reg, _ = registry(ConstantSignal(10.0), set())
    loop = make_loop(reg, clock, policy("a"), policy("b"))
    await run_for(loop, clock, 1)
    assert clock.pending == 0


class HangingSignal(ConstantSignal):
    """A source whose backend never answers for one target."""

    def __init__(self, value: float, hang_for: str) -> None:
        super().__init__(value)
        self.hang_for = hang_for
        self.never = anyio.Event()

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        if target.resource_id == self.hang_for:
            await self.never.wait()
        return await super().observe(target, objectives, now)


async def test_health_names_a_stuck_target_by_its_own_interval(clock: VirtualClock) -> None:
    """A pass stuck for over an interval makes /healthz stalled; a slow interval is not stuck."""
    from controller.server import health

    stuck = policy("stuck")
    slow = make_policy(
        metadata={"name": "slow"},
        target={"type": "containerApp", "resourceId": APP_ID.replace("agentstudio-api", "slow")},
        remediation=[],
        interval="5m",
    )
    signal = HangingSignal(10.0, stuck.target.resource_id)
    reg, _ = registry(signal, set())
    loop = make_loop(reg, clock, stuck, slow)
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run)
        await clock.drive(START + timedelta(seconds=20), sleepers=1)
        ok, _ = health(loop, clock)
        assert ok  # not yet an interval late
        await clock.drive(START + timedelta(minutes=4), sleepers=1)
        ok, detail = health(loop, clock)
        tg.cancel_scope.cancel()
    assert not ok and detail["stalled"] == ["stuck"]


async def test_a_decision_made_before_a_stall_is_dropped(clock: VirtualClock) -> None:
    """When reading the resource stalls past two intervals, the decision is not run."""
    signal = ConstantSignal(95.0)
    reg, applied = registry(signal, set())
    slow_read = reg.readers["containerApp"]

    async def stalled(target: Target) -> ResourceState:
        await clock.sleep(90)  # e.g. ARM throttling and retries
        return await slow_read(target)

    reg.readers["containerApp"] = stalled
    audit = MemoryAudit()
    metrics = Metrics()
    rec = Reconciler(
        policy("a"), reg, clock, Mode.LIVE, audit, metrics, decision_ttl=timedelta(seconds=60)
    )
    loop = Loop([rec], clock, metrics, interval=timedelta(seconds=30), rng=random.Random(1))
    await run_for(loop, clock, 5)
    assert applied == []
    denied = [r for r in audit.records if r["decision"] == "deny"]
    assert denied and all(r["guard"] == "ttl" for r in denied)
    assert "stale decision" in denied[0]["reason"]


async def test_a_reloaded_target_waits_for_its_action_in_flight() -> None:
    """The policy is replaced while its action runs (shielded): the new reconciler starts
    only once that action is in memory, so its cooldown holds — one action, not two. A
    removed target then leaves no health entry behind to trip /healthz."""
    clock = VirtualClock(START)
    started, release = anyio.Event(), anyio.Event()
    reg, applied = registry(ConstantSignal(95.0), set())

    @reg.action("containerApp", "scaleOut")
    async def slow_scale_out(target: Target, proposal: Proposal) -> Outcome:
        started.set()
        await release.wait()
        applied.append(target.resource_id)
        return Outcome(OutcomeKind.SUCCEEDED, proposal.before, proposal.after)

    loop = make_loop(reg, clock, policy("app-a"))
    [old] = loop.reconcilers
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run)
        await clock.drive(START + timedelta(minutes=10), sleepers=1, stop_when=started.is_set)
        new = Reconciler(
            old.policy, reg, clock, Mode.LIVE, MemoryAudit(), Metrics(), memory=old.memory
        )
        loop.replace([new])
        await clock.advance(120)  # time passes while the old action is still running
        release.set()
        await clock.drive(clock.now() + timedelta(minutes=3), sleepers=1)
        assert len(applied) == 1  # the new one saw the action and its cooldown
        loop.replace([])
        await clock.settle()
        assert loop.health.stalled(clock.now() + timedelta(hours=1)) == []
        assert "app-a" not in loop.health.due
        tg.cancel_scope.cancel()


async def test_a_target_replaced_twice_still_waits_for_the_first_action() -> None:
    """Replaced while its action runs, then replaced again (or removed) before that action
    ends: whatever comes next still waits for the action — never two actors on one
    target — and ``stopped`` returns only once its result is in memory."""
    clock = VirtualClock(START)
    started, release = anyio.Event(), anyio.Event()
    reg, applied = registry(ConstantSignal(95.0), set())

    @reg.action("containerApp", "scaleOut")
    async def slow_scale_out(target: Target, proposal: Proposal) -> Outcome:
        started.set()
        await release.wait()
        applied.append(target.resource_id)
        return Outcome(OutcomeKind.SUCCEEDED, proposal.before, proposal.after)

    loop = make_loop(reg, clock, policy("app-a"))
    [old] = loop.reconcilers

    def successor() -> Reconciler:
        return Reconciler(
            old.policy, reg, clock, Mode.LIVE, MemoryAudit(), Metrics(), memory=old.memory
        )

    async with anyio.create_task_group() as tg:
        try:
            tg.start_soon(loop.run)
            await clock.drive(START + timedelta(minutes=10), sleepers=1, stop_when=started.is_set)
            loop.replace([successor()])
            await clock.settle()
            loop.replace([])  # the partition lost: removed while the first action still runs
            stopped = anyio.Event()

            async def wait_stopped() -> None:
                await loop.stopped(["app-a"])
                stopped.set()

            tg.start_soon(wait_stopped)
            await clock.settle()
            assert not stopped.is_set()  # the first action has no result yet
            third = successor()
            loop.replace([third])  # and gained back
            await clock.advance(120)
            assert third.track.count == 0 and applied == []  # the third has not even passed
            release.set()
            await clock.settle()
            assert stopped.is_set() and len(applied) == 1
            await clock.drive(clock.now() + timedelta(minutes=3), sleepers=1)
            assert len(applied) == 1  # the third saw the action and its cooldown
            tg.cancel_scope.cancel()
        finally:  # a failed assertion must not leave the shielded action hanging
            release.set()


async def test_replaced_reconcilers_are_not_kept() -> None:
    """A target replaced again and again (policy edits, discoveries) holds one
    reconciler, not every one it ever had."""
    clock = VirtualClock(START)
    reg, _ = registry(ConstantSignal(10.0), set())
    loop = make_loop(reg, clock, policy("app-a"))
    [first] = loop.reconcilers
    gone = [weakref.ref(first)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run)
        await clock.drive(START + timedelta(minutes=2), sleepers=1)
        for _ in range(5):
            fresh = Reconciler(first.policy, reg, clock, Mode.LIVE, MemoryAudit(), Metrics())
            loop.replace([fresh])
            gone.append(weakref.ref(fresh))
            await clock.drive(clock.now() + timedelta(minutes=2), sleepers=1)
        del first, fresh
        gc.collect()
        alive = [ref for ref in gone if ref() is not None]
        assert len(alive) == 1 and alive[0]() is loop.reconcilers[0]
        tg.cancel_scope.cancel()


async def test_a_write_refused_at_the_last_moment_counts_as_denied(clock: VirtualClock) -> None:
    """Leadership lost between the guards and the write: nothing runs, and the decisions
    metric says deny by the leader guard — not allow — as the audit line does."""
    reg, applied = registry(ConstantSignal(95.0), set())
    audit, metrics = MemoryAudit(), Metrics()
    rec = Reconciler(
        policy("a"),
        reg,
        clock,
        Mode.LIVE,
        audit,
        metrics,
        write_check=lambda: "not sent: leadership could not be proven",
    )
    loop = Loop([rec], clock, metrics, interval=timedelta(seconds=30), rng=random.Random(1))
    await run_for(loop, clock, 12)
    assert applied == []
    counted = {
        (s.labels["decision"], s.labels["guard"]): s.value
        for family in metrics.decisions.collect()
        for s in family.samples
        if s.name.endswith("_total") and s.value
    }
    assert set(counted) == {("deny", "leader")}
