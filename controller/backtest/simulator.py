"""The simulated estate a replay acts on, and the history it observes through.

The effect model (``effects=True``) lets actions change what is replayed:

* utilisation-like signals (CPU %, memory %, RU consumption, Redis server load …) scale
  with old capacity / new capacity — replicas × cores for an app, RU/s for a Cosmos DB
  offer, the cache size's units for Redis — capped at 100 %;
* a 429 share follows throughput: the demand implied by the recorded share and the
  starting throughput, against the throughput now;
* restarts, reboots and rollbacks have no built-in effect; latency and error rates are
  replayed as recorded;
* then what the policy declares its actions do (its ``backtest.effects``: a value that
  replaces, or a factor that multiplies, one objective's values for a while).

``effects=False`` replays open-loop: exactly what was recorded, whatever is done.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from controller.backtest.history import History
from controller.clock import Clock
from controller.core.evaluate import HOLDS
from controller.model import (
    CacheSku,
    ContainerSize,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    ResourceState,
    Sample,
    Throughput,
)
from controller.policy.schema import DeclaredEffect, MetricSignal, Objective, Target

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
    effects: tuple[DeclaredEffect, ...] = ()  # what the policy says its actions do
    declared: list[tuple[datetime, DeclaredEffect]] = field(default_factory=list)  # applied

    def declared_at(self, objective: str, ts: datetime, value: float) -> float:
        """``value`` after the declared effects of the actions taken by ``ts``, in order."""
        for at, effect in self.declared:
            if effect.objective != objective or ts < at:
                continue
            if effect.for_ is not None and ts >= at + effect.for_:
                continue
            value = effect.value if effect.value is not None else value * (effect.factor or 0.0)
        return value

    def capacity_at(self, ts: datetime) -> float:
        """The capacity in effect at ``ts``."""
        for changed, size in reversed(self.capacity):  # most reads are of the newest
            if changed <= ts:
                return size
        return self.capacity[0][1]


class Simulator:
    """The estate the actions change: one state per target, and its capacity over time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.targets: dict[str, _Target] = {}

    def add(
        self,
        policy: str,
        state: ResourceState,
        start: datetime,
        effects: Sequence[DeclaredEffect] = (),
    ) -> None:
        size = capacity(state)
        self.targets[state.resource_id.lower()] = _Target(
            policy, state, size, [(start, size)], [(start, state)], tuple(effects)
        )

    def of(self, target: Target) -> _Target:
        return self.targets[target.resource_id.lower()]

    async def read(self, target: Target) -> ResourceState:
        return self.of(target).state

    async def act(self, target: Target, proposal: Proposal) -> Outcome:
        sim = self.of(target)
        sim.state = apply(sim.state, proposal)
        sim.capacity.append((self._clock.now(), capacity(sim.state)))
        sim.states.append((self._clock.now(), sim.state))
        sim.declared += [(self._clock.now(), e) for e in sim.effects if e.action == proposal.action]
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


Effect = Literal["share", "utilisation"] | None


@dataclass(frozen=True)
class Reading:
    """How one objective of one target is read from the history."""

    policy: str
    objective: Objective
    target: _Target  # the simulated target, whose capacity the effect model reads
    window: timedelta  # how far back a pass looks: the for window, staleness, two grains
    grain: timedelta
    staleness: timedelta
    effect: Effect  # how the effect model changes it, if at all


class ReplaySource:
    """Every signal type, answered from the history (completed buckets only)."""

    def __init__(self, history: History, simulator: Simulator, effects: bool) -> None:
        self._history = history
        self._sim = simulator
        self._effects = effects
        self._readings: dict[tuple[str, str], Reading] = {}

    def reading(self, target: Target, objective: Objective) -> Reading:
        """How an objective is read, worked out once: a replay reads it on every pass."""
        key = (target.resource_id, objective.name)
        reading = self._readings.get(key)
        if reading is None:
            grain = objective.signal.grain
            signal = objective.signal
            effect: Effect = None
            if isinstance(signal, MetricSignal) and signal.share_of is not None:
                effect = "share"
            elif any(word in objective.measures.lower() for word in _UTILISATION):
                effect = "utilisation"
            sim = self._sim.of(target)
            reading = self._readings[key] = Reading(
                sim.policy,
                objective,
                sim,
                objective.for_ + objective.staleness + grain * 2,
                grain,
                objective.staleness,
                effect,
            )
        return reading

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing to prepare: the history is in memory."""

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing kept per target."""

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        for objective in objectives:
            reading = self.reading(target, objective)
            points = self._history.window(
                reading.policy, objective.name, now - reading.window, now - reading.grain
            )
            samples = tuple(Sample(ts, self._effect(reading, ts, value)) for ts, value in points)
            quality = Quality.GOOD if any(s.value is not None for s in samples) else Quality.MISSING
            out[objective.name] = Observation(
                target.resource_id, objective.measures, samples, quality, now
            )
        return out

    def feed(self, reading: Reading) -> Feed:
        """A cursor over one objective's history, for passes read in time order."""
        times, values = self._history.valued(reading.policy, reading.objective.name)
        return Feed(reading, times, values, self._effects)

    def state(self, target: Target) -> ResourceState:
        """What reading the target answers now."""
        return self._sim.of(target).state

    def _effect(self, reading: Reading, ts: datetime, value: float | None) -> float | None:
        if value is None or not self._effects:
            return value
        target = reading.target
        value = effective(reading.effect, target.start_capacity, target.capacity_at(ts), value)
        if target.declared:
            value = target.declared_at(reading.objective.name, ts, value)
        return value


def effective(effect: Effect, start: float, capacity: float, value: float) -> float:
    """A recorded value as the effect model has it with ``capacity`` instead of the
    ``start`` capacity (see the module's docstring); monotonic in the value."""
    if effect is None or start == capacity:
        return value
    if effect == "share":
        share = min(max(value / 100, 0.0), 0.99)
        demand = start / (1 - share)  # what was asked of the starting throughput
        return round(max(0.0, 1 - capacity / demand) * 100, 6)
    return round(min(100.0, value * start / capacity), 6)


class Feed:
    """One objective's history as passes asked in time order would observe it: what the
    newest point says (:meth:`settled`) and the window's worst (:meth:`worst`), read
    with a cursor instead of a search. The worst comes from the recorded values while
    the capacity stayed the same (the effect model is monotonic, so the worst recorded
    value is the worst effective one), point by point across a change of size."""

    def __init__(
        self,
        reading: Reading,
        times: list[datetime],
        values: list[float],
        effects: bool,
    ) -> None:
        self.reading = reading
        self._times = times
        self._values = values
        self._meets = HOLDS[reading.objective.comparison]
        self._threshold = reading.objective.threshold
        # from the target's last change of size on (nothing changes it during a scan),
        # every point has the same capacity: the effect needs no lookup
        target = reading.target
        self._since, self._capacity = target.capacity[-1]
        self._start = target.start_capacity
        self._kind: Effect = reading.effect if effects else None
        # effects the policy declared, once one of its actions ran: applied point by point
        self._declared = target.declared if effects else []
        self._newest: int | None = None  # index of the newest point of the last pass's window

    def settled(self, now: datetime) -> float | None:
        """The value :meth:`ReplaySource.observe` would show ``now`` when it is one
        :func:`~controller.core.evaluate.evaluate` judges ok after an ok — the newest
        point, fresh and meeting the objective — or None when it is not. ``now`` never
        goes back."""
        reading, times = self.reading, self._times
        newest = now - reading.grain
        k = self._newest
        if k is None:
            k = bisect.bisect_right(times, newest) - 1
        while k + 1 < len(times) and times[k + 1] <= newest:
            k += 1
        self._newest = k
        if k < 0 or newest - times[k] > reading.staleness:
            return None
        value = self._value(k)
        if not self._meets(value, self._threshold):
            return None
        return value

    def worst(self, now: datetime) -> float | None:
        """The value most against the objective in the window :meth:`settled` last read
        (a step back is projected from it); call that for the same ``now`` first."""
        reading, times, newest = self.reading, self._times, self._newest
        if newest is None:
            raise RuntimeError("Feed.worst before Feed.settled")
        first = bisect.bisect_left(times, now - reading.window, hi=newest + 1)
        if first > newest:
            return None
        pick = max if reading.objective.comparison in ("<", "<=") else min
        if times[first] >= self._since and not self._declared:  # one capacity for them all
            values = self._values[first : newest + 1]
            return effective(self._kind, self._start, self._capacity, pick(values))
        return pick(self._value(k) for k in range(first, newest + 1))

    def _value(self, k: int) -> float:
        """Point ``k`` as the effect model has it."""
        ts, reading = self._times[k], self.reading
        capacity = self._capacity if ts >= self._since else reading.target.capacity_at(ts)
        value = effective(self._kind, self._start, capacity, self._values[k])
        if self._declared:
            value = reading.target.declared_at(reading.objective.name, ts, value)
        return value
