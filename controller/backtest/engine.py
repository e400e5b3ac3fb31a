"""Replay history through the controller's own reconcilers on a virtual clock.

The decision core, the guards, verification and breakers are the production ones: only
the edges change. Signals come from the history (:class:`ReplaySource`); actions go to a
simulated estate (:class:`Simulator`) instead of Azure; the audit is kept in memory.

The effect model (``effects=True``) lets actions change what is replayed:

* utilisation-like signals (CPU %, memory %, RU consumption, Redis server load …) scale
  with old capacity / new capacity — replicas × cores for an app, RU/s for a Cosmos DB
  offer, the cache size's units for Redis — capped at 100 %;
* a 429 share follows throughput: the demand implied by the recorded share and the
  starting throughput, against the throughput now;
* restarts, reboots and rollbacks have no modelled effect; latency and error rates are
  replayed as recorded.

``effects=False`` replays open-loop: exactly what was recorded, whatever is done.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import anyio

from controller.audit.log import MemoryAudit
from controller.backtest.history import History
from controller.backtest.model import (
    Backtest,
    Cost,
    Marker,
    ObjectiveTrace,
    Point,
    TargetSummary,
    TargetTrace,
)
from controller.backtest.prices import Prices, cost_of
from controller.clock import VirtualClock
from controller.config import BudgetSettings, FailStaticSettings
from controller.fleet import Fleet
from controller.loop import Loop
from controller.model import (
    CacheSku,
    ContainerSize,
    Mode,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    ResourceState,
    Sample,
    Throughput,
    Verdict,
    VerdictState,
)
from controller.policy.schema import (
    LADDER_ACTIONS,
    STEP_BACK_ACTIONS,
    MetricSignal,
    Objective,
    Policy,
    Target,
)
from controller.reconcile import PassResult, Reconciler
from controller.registry import Registry
from controller.sizes import parse_memory_gib
from controller.telemetry import Metrics

# Redis capacity in units of a C1 (Azure's relative sizes, roughly)
CACHE_UNITS: dict[str, list[float]] = {
    "C": [0.25, 1, 2, 4, 8, 16, 32],
    "P": [0, 4, 8, 16, 24, 32],
}
_UTILISATION = (
    "percent",
    "normalizedruconsumption",
    "serverload",
    "usedmemory",
)


def capacity(state: ResourceState) -> float:
    """How much the target can serve, in its own units."""
    if state.throughput is not None:
        return float(state.throughput.provisioned)
    if state.cache is not None:
        units = CACHE_UNITS.get(state.cache.family, [1.0])
        return float(units[min(state.cache.capacity, len(units) - 1)] or 1.0)
    replicas = max(state.replicas or 0, state.min_replicas, 1)
    return replicas * (sum(c.cpu for c in state.containers) or 1.0)


def default_state(target: Target) -> ResourceState:
    """A starting size when the history has none: the smallest ordinary one."""
    if target.type.startswith("cosmos"):
        return ResourceState(target.resource_id, throughput=Throughput(400, None, 400, 10_000))
    if target.type == "redisCache":
        return ResourceState(target.resource_id, cache=CacheSku("Standard", "C", 1))
    return ResourceState(
        target.resource_id,
        min_replicas=1,
        replicas=1,
        containers=(ContainerSize("app", 0.5, "1Gi"),),
        latest_revision="replayed",
    )


@dataclass
class _Target:
    policy: str
    state: ResourceState
    start_capacity: float
    capacity: list[tuple[datetime, float]]  # changes, oldest first
    states: list[tuple[datetime, ResourceState]]  # every size it had, oldest first


class Simulator:
    """The estate the actions change: one state per target, and its capacity over time."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.targets: dict[str, _Target] = {}

    def add(self, policy: str, state: ResourceState, start: datetime) -> None:
        size = capacity(state)
        self.targets[state.resource_id.lower()] = _Target(
            policy, state, size, [(start, size)], [(start, state)]
        )

    def of(self, target: Target) -> _Target:
        return self.targets[target.resource_id.lower()]

    def capacity_at(self, resource_id: str, ts: datetime) -> tuple[float, float]:
        """(capacity at the start, capacity in effect at ``ts``)."""
        sim = self.targets[resource_id.lower()]
        now = sim.capacity[0][1]
        for changed, size in sim.capacity:
            if changed > ts:
                break
            now = size
        return sim.start_capacity, now

    async def read(self, target: Target) -> ResourceState:
        return self.of(target).state

    async def act(self, target: Target, proposal: Proposal) -> Outcome:
        sim = self.of(target)
        sim.state = apply(sim.state, proposal)
        sim.capacity.append((self._clock.now(), capacity(sim.state)))
        sim.states.append((self._clock.now(), sim.state))
        return Outcome(OutcomeKind.SUCCEEDED, proposal.before, proposal.after, "simulated")


def apply(state: ResourceState, proposal: Proposal) -> ResourceState:
    """What an action does to a target, as far as the effect model goes."""
    p = proposal.params
    if proposal.action in ("scaleOut", "scaleIn"):
        wanted = int(p["minReplicas"])
        top = max(int(p.get("maxReplicas", state.max_replicas)), wanted)
        return replace(state, min_replicas=wanted, max_replicas=top, replicas=wanted)
    if proposal.action in ("scaleUp", "scaleDown"):
        containers = tuple(
            replace(c, cpu=float(p["cpu"]), memory=str(p["memory"]))
            if c.name == p["container"]
            else c
            for c in state.containers
        )
        return replace(state, containers=containers)
    if proposal.action in ("raiseThroughput", "lowerThroughput") and state.throughput:
        if "throughput" in p:
            return replace(state, throughput=replace(state.throughput, manual=int(p["throughput"])))
        offer = replace(state.throughput, autoscale_max=int(p["maxThroughput"]))
        return replace(state, throughput=offer)
    if proposal.action == "scaleCache":
        return replace(state, cache=CacheSku(str(p["sku"]), str(p["family"]), int(p["capacity"])))
    return state  # restarts, reboots, rollbacks: no modelled effect


class ReplaySource:
    """Every signal type, answered from the history (completed buckets only)."""

    def __init__(self, history: History, simulator: Simulator, effects: bool) -> None:
        self._history = history
        self._sim = simulator
        self._effects = effects

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing to prepare: the history is in memory."""

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        policy = self._sim.of(target).policy
        out: dict[str, Observation] = {}
        for objective in objectives:
            grain = objective.signal.grain
            oldest = now - (objective.for_ + objective.staleness + grain * 2)
            points = self._history.window(policy, objective.name, oldest, now - grain)
            samples = tuple(
                Sample(ts, self._effect(target, objective, ts, value)) for ts, value in points
            )
            quality = Quality.GOOD if any(s.value is not None for s in samples) else Quality.MISSING
            out[objective.name] = Observation(
                target.resource_id, objective.measures, samples, quality, now
            )
        return out

    def _effect(
        self, target: Target, objective: Objective, ts: datetime, value: float | None
    ) -> float | None:
        if value is None or not self._effects:
            return value
        start, now = self._sim.capacity_at(target.resource_id, ts)
        if start == now:
            return value
        signal = objective.signal
        if isinstance(signal, MetricSignal) and signal.share_of is not None:
            share = min(max(value / 100, 0.0), 0.99)
            demand = start / (1 - share)  # what was asked of the starting throughput
            return round(max(0.0, 1 - now / demand) * 100, 6)
        if any(word in objective.measures.lower() for word in _UTILISATION):
            return round(min(100.0, value * start / now), 6)
        return value


@dataclass
class _Collected:
    passes: list[tuple[datetime, PassResult]]


async def replay(
    policies: Sequence[Policy],
    history: History,
    start: datetime,
    end: datetime,
    *,
    effects: bool = True,
    label: str = "policies",
    interval: timedelta = timedelta(minutes=1),
    prices: Prices | None = None,
    mode: Mode = Mode.LIVE,
) -> Backtest:
    """Run ``policies`` over ``history`` from ``start`` to ``end`` on a virtual clock.

    ``mode`` live (the default) acts on the simulated estate, so verification, breakers and
    the effect model play out; dry-run replays what a dry-run controller would have logged.
    """
    clock = VirtualClock(start)
    simulator = Simulator(clock)
    registry = Registry()
    source = ReplaySource(history, simulator, effects)
    for kind in ("azureMonitor", "logs", "prometheus", "httpProbe"):
        registry.add_signal(kind, source)
    for kind, ladder in LADDER_ACTIONS.items():
        registry.reader(kind)(simulator.read)
        for action in (*ladder, *STEP_BACK_ACTIONS[kind]):
            registry.action(kind, action)(simulator.act)
    for policy in policies:
        state = history.states.get(policy.name) or default_state(policy.target)
        simulator.add(policy.name, replace(state, resource_id=policy.target.resource_id), start)
    audit = MemoryAudit()
    metrics = Metrics()
    fleet = Fleet(BudgetSettings(), FailStaticSettings(), len(policies))
    reconcilers = [
        Reconciler(
            policy,
            registry,
            clock,
            mode,
            audit,
            metrics,
            decision_ttl=2 * (policy.interval or interval),
            fleet=fleet,
        )
        for policy in policies
    ]
    collected = _Collected([])
    loop = Loop(
        reconcilers,
        clock,
        metrics,
        interval=interval,
        jitter=0.0,
        rng=random.Random(0),
        on_pass=lambda result: collected.passes.append((clock.now(), result)),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run)
        await clock.drive(end, sleepers=len(reconcilers))
        tg.cancel_scope.cancel()
    table = prices or Prices()
    traces = tuple(
        _trace(policy, simulator, collected.passes, audit.records, end, table)
        for policy in policies
    )
    return Backtest(label, start, end, effects, traces)


def _trace(
    policy: Policy,
    simulator: Simulator,
    passes: list[tuple[datetime, PassResult]],
    records: list[dict[str, object]],
    end: datetime,
    prices: Prices,
) -> TargetTrace:
    mine = [(ts, r) for ts, r in passes if r.policy == policy.name]
    objectives = tuple(_objective(o, mine, end) for o in policy.objectives)
    markers = tuple(markers_from(policy.name, records))
    stretches = windows([(ts, r.worst) for ts, r in mine], end)
    sim = simulator.targets[policy.target.resource_id.lower()]
    cost = cost_of(usage(sim.capacity, sim.states, end), prices)
    summary = summarize(markers, stretches, cost)
    return TargetTrace(policy.name, policy.target.resource_id, objectives, markers, summary)


def summarize(
    markers: Sequence[Marker], stretches: Sequence[tuple[datetime, datetime]], cost: Cost
) -> TargetSummary:
    """The summary table of one target, from its markers and breach stretches."""
    acted = [m for m in markers if m.kind == "acted"]
    actions: dict[str, int] = {}
    for marker in acted:
        actions[marker.action or "?"] = actions.get(marker.action or "?", 0) + 1
    denied: dict[str, int] = {}
    for marker in markers:
        if marker.kind == "denied":
            denied[marker.guard or "?"] = denied.get(marker.guard or "?", 0) + 1
    first = (
        (acted[0].ts - stretches[0][0]).total_seconds() / 60
        if acted and stretches and acted[0].ts >= stretches[0][0]
        else None
    )
    escalations = [m for m in markers if m.kind == "escalation"]
    return TargetSummary(
        actions=actions,
        denied=denied,
        breach_minutes=sum((b - a).total_seconds() for a, b in stretches) / 60,
        first_action_minutes=first,
        breaker_openings=sum(1 for m in escalations if "breaker" in m.reason),
        escalations=len(escalations),
        cost=cost,
    )


def _objective(
    objective: Objective, passes: list[tuple[datetime, PassResult]], end: datetime
) -> ObjectiveTrace:
    points: list[Point] = []
    states: list[tuple[datetime, VerdictState]] = []
    for ts, result in passes:
        verdict = _verdict(result.verdicts, objective.name)
        if verdict is None:
            continue
        points.append(
            Point(ts, verdict.value if verdict.state is not VerdictState.UNKNOWN else None)
        )
        states.append((ts, verdict.state))
    return ObjectiveTrace(
        objective.name,
        objective.measures,
        objective.comparison,
        objective.threshold,
        objective.clear_line,
        tuple(points),
        tuple(windows(states, end)),
    )


def _verdict(verdicts: Sequence[Verdict], name: str) -> Verdict | None:
    return next((v for v in verdicts if v.objective == name), None)


def windows(
    states: Sequence[tuple[datetime, VerdictState]], end: datetime
) -> list[tuple[datetime, datetime]]:
    """Contiguous stretches judged in breach, [first breach pass, first pass after)."""
    windows: list[tuple[datetime, datetime]] = []
    opened: datetime | None = None
    for ts, state in states:
        if state is VerdictState.BREACH and opened is None:
            opened = ts
        elif state is not VerdictState.BREACH and opened is not None:
            windows.append((opened, ts))
            opened = None
    if opened is not None:
        windows.append((opened, end))
    return windows


def markers_from(policy: str, records: list[dict[str, object]]) -> list[Marker]:
    markers = []
    for record in records:
        if record.get("policy") != policy:
            continue
        ts = datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
        kind, action = record.get("kind"), record.get("action")
        reason = str(record.get("reason") or "")
        params = record.get("params") if isinstance(record.get("params"), dict) else {}
        assert isinstance(params, dict)
        if kind == "escalation":
            markers.append(Marker(ts, "escalation", str(action) if action else None, reason))
        elif (kind == "result" and record.get("outcome") == "succeeded") or (
            kind == "decision" and record.get("outcome") == "would-run"
        ):
            markers.append(Marker(ts, "acted", str(action), reason, params=params))
        elif kind == "decision" and record.get("decision") == "deny":
            guard = str(record.get("guard") or "")
            markers.append(Marker(ts, "denied", str(action), reason, guard, params))
        elif kind == "decision" and record.get("decision") == "pending-approval":
            markers.append(Marker(ts, "pending-approval", str(action), reason, params=params))
    return markers


def usage(
    changes: Sequence[tuple[datetime, float]],
    states: Sequence[tuple[datetime, ResourceState]],
    end: datetime,
) -> dict[str, float]:
    """Extra capacity the actions bought, integrated over time, in billing units (the
    units :func:`controller.backtest.prices.cost_of` prices)."""
    base = changes[0][1]
    final = states[-1][1]
    extra_hours = 0.0
    stops = [at for at, _ in changes[1:]] + [end]
    for (at, size), until in zip(changes, stops, strict=True):
        extra_hours += max(size - base, 0.0) * (until - at).total_seconds() / 3600
    if final.throughput is not None:
        key = "ru-hours" if final.throughput.manual is not None else "ru-hours-autoscale"
        return {key: round(extra_hours, 6)}
    if final.cache is not None:  # hours at each larger size, less those at the start size
        start = states[0][1].cache
        units: dict[str, float] = {}
        ends = [at for at, _ in states[1:]] + [end]
        for (at, state), until in zip(states, ends, strict=True):
            cache = state.cache
            if cache is None or start is None or cache == start:
                continue
            hours = (until - at).total_seconds() / 3600
            bigger = f"redis:{cache.name}:{cache.family}{cache.capacity}-hours"
            smaller = f"redis:{start.name}:{start.family}{start.capacity}-hours"
            units[bigger] = round(units.get(bigger, 0.0) + hours, 6)
            units[smaller] = round(units.get(smaller, 0.0) - hours, 6)
        return units
    memory_per_core = 2.0  # Container Apps consumption pairs: 2 GiB per core
    for container in final.containers:
        if container.cpu:
            memory_per_core = parse_memory_gib(container.memory) / container.cpu
            break
    return {
        "vcpu-hours": round(extra_hours, 6),
        "gib-hours": round(extra_hours * memory_per_core, 6),
    }
