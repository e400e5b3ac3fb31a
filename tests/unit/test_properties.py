"""Stateful property tests: random metric series, faults, restarts and switches.

Hypothesis drives one target through any sequence of: metric values (including empty
buckets and failing backends), time passing, reconcile passes, restarts that rebuild
memory from the audit log, the kill switch, losing the leader lease, and an audit log
that cannot be written. Whatever the sequence:

* no value is ever set outside the policy's bounds;
* dry-run changes nothing;
* the hourly budget holds, across restarts;
* nothing runs while paused, not leader, with the audit unwritable, or with the
  action's circuit breaker open.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from controller.audit.log import AuditUnavailable, MemoryAudit, Record
from controller.audit.replay import replay
from controller.clock import VirtualClock
from controller.core.breaker import BreakerState
from controller.model import (
    ContainerSize,
    DecisionKind,
    Mode,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    ResourceState,
    Sample,
)
from controller.policy.schema import Objective, Target
from controller.reconcile import Reconciler
from controller.registry import Registry
from controller.telemetry import Metrics
from tests.conftest import START, make_policy

MAX_REPLICAS, MAX_CPU, PER_HOUR = 6, 1.0, 3


class SwitchableAudit:
    """The audit sink, with a disk that can fail."""

    def __init__(self) -> None:
        self.inner = MemoryAudit()
        self.broken = False

    def append(self, record: Record) -> int:
        if self.broken:
            raise AuditUnavailable("disk full")
        return self.inner.append(record)

    def problem(self) -> str | None:
        return "disk full" if self.broken else None


class ControllerMachine(RuleBasedStateMachine):
    @initialize(
        live=st.booleans(),
        cooldown=st.sampled_from(["1m", "5m", "15m"]),
        breaker_failures=st.integers(1, 3),
    )
    def setup(self, live: bool, cooldown: str, breaker_failures: int) -> None:
        self.mode = Mode.LIVE if live else Mode.DRY_RUN
        self.policy = make_policy(
            remediation=[
                {"scaleOut": {"step": 2, "maxReplicas": 5}},
                {"scaleUp": {"maxCpu": MAX_CPU}},
                {"restartRevision": {}},
            ],
            guards={
                "cooldown": cooldown,
                "maxActionsPerHour": PER_HOUR,
                "bounds": {"maxReplicas": MAX_REPLICAS, "maxCpu": MAX_CPU},
                "breaker": {"failures": breaker_failures, "openFor": "30m"},
            },
            stepBack={"baseline": {"minReplicas": 1}, "stableFor": "10m", "cooldown": "5m"},
        )
        self.clock = VirtualClock(START)
        self.app = {"min": 1, "cpu": 0.5}
        self.value: float | None = 95.0  # start in breach: the interesting part
        self.backend_failing = False
        self.paused = False
        self.leader = True
        self.fail_actions = False
        self.applied: list[datetime] = []
        self.audit = SwitchableAudit()
        self.registry = self._registry()
        self.reconciler = self._reconciler(None, None)

    # ---- plug-ins standing in for Azure (this tests the decision path, not the SDK) ----

    def _registry(self) -> Registry:
        machine = self
        reg = Registry()

        class Signal:
            def register(self, target: Target, objectives: Sequence[Objective]) -> None:
                return None

            def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
                return None

            async def observe(
                self, target: Target, objectives: Sequence[Objective], now: datetime
            ) -> dict[str, Observation]:
                if machine.backend_failing:
                    return {
                        o.name: Observation(
                            target.resource_id, "x", (), Quality.ERROR, now, "HTTP 500"
                        )
                        for o in objectives
                    }
                minute = now.replace(second=0, microsecond=0)
                samples = tuple(
                    Sample(minute - timedelta(minutes=k), machine.value) for k in range(10, 0, -1)
                )
                quality = Quality.GOOD if machine.value is not None else Quality.MISSING
                return {
                    o.name: Observation(target.resource_id, "x", samples, quality, now)
                    for o in objectives
                }

        reg.add_signal("azureMonitor", Signal())

        @reg.reader("containerApp")
        async def read(target: Target) -> ResourceState:
            cpu = machine.app["cpu"]
            return ResourceState(
                target.resource_id,
                int(machine.app["min"]),
                10,
                (ContainerSize("api", cpu, f"{cpu * 2:g}Gi"),),
                "r1",
            )

        def action(name: str, change: Any) -> None:
            @reg.action("containerApp", name)
            async def apply(target: Target, proposal: Proposal) -> Outcome:
                if machine.fail_actions:
                    raise ConnectionError("ARM unreachable")
                change(proposal.params)
                machine.applied.append(machine.clock.now())
                return Outcome(OutcomeKind.SUCCEEDED, proposal.before, proposal.after)

        action("scaleOut", lambda p: machine.app.__setitem__("min", p["minReplicas"]))
        action("scaleIn", lambda p: machine.app.__setitem__("min", p["minReplicas"]))
        action("scaleUp", lambda p: machine.app.__setitem__("cpu", p["cpu"]))
        action("scaleDown", lambda p: machine.app.__setitem__("cpu", p["cpu"]))
        action("restartRevision", lambda p: None)
        return reg

    def _reconciler(self, memory: Any, intent: Any) -> Reconciler:
        async def paused(state: ResourceState) -> str | None:
            return "paused" if self.paused else None

        return Reconciler(
            self.policy,
            self.registry,
            self.clock,
            self.mode,
            self.audit,
            Metrics(),
            memory=memory,
            open_intents=intent or (),
            paused=paused,
            standby=lambda: None if self.leader else "standby",
        )

    # ---- rules ----

    @rule(
        value=st.one_of(st.none(), st.floats(0, 100), st.sampled_from([30.0, 65.0, 95.0])),
        failing=st.booleans(),
    )
    def metric(self, value: float | None, failing: bool) -> None:
        """A new level (or an empty bucket), and whether the backend answers at all."""
        self.value, self.backend_failing = value, failing

    @rule(passes=st.integers(1, 40), gap=st.sampled_from([30, 30, 30, 600]))
    def run_for_a_while(self, passes: int, gap: int) -> None:
        """The loop's cadence: a pass every 30 s (or a stall of ten minutes)."""
        for _ in range(passes):
            self.clock._now += timedelta(seconds=gap)
            self.reconcile()

    @rule(
        switch=st.sampled_from(["paused", "standby", "audit-broken", "azure-failing"]),
        on=st.booleans(),
    )
    def flip(self, switch: str, on: bool) -> None:
        """The kill switch, losing the lease, a full disk, Azure refusing writes."""
        if switch == "paused":
            self.paused = on
        elif switch == "standby":
            self.leader = not on
        elif switch == "audit-broken":
            self.audit.broken = on
        else:
            self.fail_actions = on

    def reconcile(self) -> None:
        before = len(self.applied)
        breakers = dict(self.reconciler.memory.breakers)
        now = self.clock.now()
        try:
            result = anyio.run(self.reconciler.reconcile)
        except AuditUnavailable:
            assert self.audit.broken
            assert len(self.applied) == before  # fail closed
            return
        ran = len(self.applied) > before
        if ran:
            assert self.mode is Mode.LIVE
            assert not self.paused and self.leader and not self.audit.broken
            assert result.decision is not None and result.decision.kind is DecisionKind.ALLOW
            proposal = result.decision.proposal
            assert proposal is not None
            breaker = breakers.get(proposal.action)
            if breaker is not None:
                open_for = self.policy.guards.breaker.open_for
                assert breaker.state(now, open_for) is not BreakerState.OPEN

    @rule()
    def restart(self) -> None:
        """A crash and restart: memory comes back only from the audit log."""
        rebuilt = replay(self.audit.inner.records)
        policy, target = self.policy.name, self.policy.target.resource_id
        self.reconciler = self._reconciler(
            rebuilt.memory_of(policy, target), rebuilt.intents_of(policy, target)
        )

    # ---- invariants ----

    @invariant()
    def within_bounds(self) -> None:
        assert self.app["min"] <= MAX_REPLICAS and self.app["cpu"] <= MAX_CPU

    @invariant()
    def dry_run_changes_nothing(self) -> None:
        if self.mode is Mode.DRY_RUN:
            assert self.applied == [] and self.app == {"min": 1, "cpu": 0.5}

    @invariant()
    def hourly_budget_holds(self) -> None:
        for t in self.applied:
            window = [a for a in self.applied if t <= a < t + timedelta(hours=1)]
            assert len(window) <= PER_HOUR


TestController = ControllerMachine.TestCase
TestController.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, derandomize=True
)
