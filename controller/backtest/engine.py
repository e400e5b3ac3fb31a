"""Replay history through the controller's own reconcilers on a virtual clock.

The decision core, the guards, verification and breakers are the production ones: only
the edges change. Signals come from the history and actions go to a simulated estate
(:mod:`controller.backtest.simulator`, where the effect model is described); the audit is
kept in memory; passes run on the loop's schedule (:mod:`controller.backtest.schedule`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from controller.audit.log import MemoryAudit
from controller.backtest.action_cost import cost_of_markers
from controller.backtest.history import History
from controller.backtest.model import (
    Backtest,
    Cost,
    Marker,
    MarkerKind,
    ObjectiveTrace,
    Points,
    TargetSummary,
    TargetTrace,
)
from controller.backtest.prices import Prices, cost_of
from controller.backtest.saturation import saturation
from controller.backtest.schedule import ReplayClock, Trace, run_schedule
from controller.backtest.simulator import ReplaySource, Simulator, default_state
from controller.config import BudgetSettings, FailStaticSettings
from controller.fleet import Fleet
from controller.model import Mode, ResourceState, VerdictState
from controller.policy.schema import LADDER_ACTIONS, STEP_BACK_ACTIONS, Objective, Policy
from controller.reconcile import Reconciler
from controller.registry import Registry
from controller.sizes import parse_memory_gib
from controller.telemetry import Metrics


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
    quiet: bool = True,
    audit: MemoryAudit | None = None,
    budgets: BudgetSettings | None = None,
    fail_static: FailStaticSettings | None = None,
) -> Backtest:
    """Run ``policies`` over ``history`` from ``start`` to ``end`` on a virtual clock.

    ``mode`` live (the default) acts on the simulated estate, so verification, breakers and
    the effect model play out; dry-run replays what a dry-run controller would have logged.
    ``quiet=False`` runs every pass in full, even those known to change nothing. The
    audit lines the replay wrote are left in ``audit`` when one is given. ``budgets`` and
    ``fail_static`` are the controller's settings (the defaults when not given): they
    hold actions back across targets, in a replay as in production.
    """
    owners: dict[str, str] = {}
    for policy in policies:
        other = owners.setdefault(policy.target.resource_id.lower(), policy.name)
        if other != policy.name:
            raise ValueError(
                f"policies {other!r} and {policy.name!r} both target "
                f"{policy.target.resource_id}: one policy per resource, as the controller loads"
            )
    clock = ReplayClock(start)
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
        simulator.add(
            policy.name,
            replace(state, resource_id=policy.target.resource_id),
            start,
            policy.backtest.effects,
        )
    audit = audit if audit is not None else MemoryAudit()
    metrics = Metrics()
    fleet = Fleet(budgets or BudgetSettings(), fail_static or FailStaticSettings(), len(policies))
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
    passes, counts = await run_schedule(
        reconcilers, clock, source, fleet, end, interval, quiet=quiet
    )
    table = prices or Prices()
    by_policy: dict[object, list[dict[str, object]]] = {}
    for record in audit.records:
        by_policy.setdefault(record.get("policy"), []).append(record)
    traces = tuple(
        _trace(policy, simulator, passes[policy.name], by_policy.get(policy.name, []), end, table)
        for policy in policies
    )
    return Backtest(
        label, start, end, effects, traces, counts.full, counts.quiet, mode.value, "replay"
    )


def _trace(
    policy: Policy,
    simulator: Simulator,
    passes: Trace,
    records: list[dict[str, object]],
    end: datetime,
    prices: Prices,
) -> TargetTrace:
    objectives = tuple(
        _objective(o, passes.times, passes.states[i], passes.values[i], end)
        for i, o in enumerate(policy.objectives)
    )
    markers = tuple(markers_from(policy.name, records))
    stretches = union(w for o in objectives for w in o.exceeded)
    sim = simulator.targets[policy.target.resource_id.lower()]
    cost = cost_of(usage(sim.capacity, sim.states, end), prices)
    would_cost = cost_of_markers(proposals(markers), end, prices)
    summary = summarize(markers, stretches, cost, would_cost, warnings_of(objectives))
    return TargetTrace(policy.name, policy.target.resource_id, objectives, markers, summary)


def summarize(
    markers: Sequence[Marker],
    stretches: Sequence[tuple[datetime, datetime]],
    cost: Cost,
    would_cost: Cost | None = None,
    warnings: Sequence[str] = (),
) -> TargetSummary:
    """The summary table of one target, from its markers and the stretches any objective
    was past its threshold (``for`` windows included): actions applied apart from the
    distinct proposals a dry-run would have run."""
    acted = [m for m in markers if m.kind == "acted"]
    actions: dict[str, int] = {}
    for marker in acted:
        actions[marker.action or "?"] = actions.get(marker.action or "?", 0) + 1
    would = proposals(markers)
    would_run: dict[str, int] = {}
    for marker in would:
        would_run[marker.action or "?"] = would_run.get(marker.action or "?", 0) + 1
    denied: dict[str, int] = {}
    for marker in markers:
        if marker.kind == "denied":
            denied[marker.guard or "?"] = denied.get(marker.guard or "?", 0) + 1
    decided = sorted([*acted, *would], key=lambda m: m.ts)
    first = (
        (decided[0].ts - stretches[0][0]).total_seconds() / 60
        if decided and stretches and decided[0].ts >= stretches[0][0]
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
        would_run=would_run,
        would_cost=would_cost if would else None,
        warnings=tuple(warnings),
    )


def warnings_of(objectives: Sequence[ObjectiveTrace]) -> tuple[str, ...]:
    """Each objective whose replayed values may understate demand, with why."""
    return tuple(f"{o.name}: {o.saturated}" for o in objectives if o.saturated)


def proposals(markers: Sequence[Marker]) -> list[Marker]:
    """The distinct would-run proposals, first sighting of each: a dry-run changes
    nothing, so the same action with the same parameters from the same state (its
    ``before``: a change to the target makes a new proposal), asked again pass after
    pass, is one proposal."""
    seen: set[str] = set()
    distinct = []
    for marker in sorted(markers, key=lambda m: m.ts):
        if marker.kind == "would-run":
            key = repr(
                (marker.action, sorted(marker.params.items()), sorted(marker.before.items()))
            )
            if key not in seen:
                seen.add(key)
                distinct.append(marker)
    return distinct


def _objective(
    objective: Objective,
    times: list[datetime],
    states: list[VerdictState],
    values: list[float | None],
    end: datetime,
) -> ObjectiveTrace:
    timed = list(zip(times, states, strict=True))
    points = Points(times, values)
    over = tuple(exceeded(timed, end))
    return ObjectiveTrace(
        objective.name,
        objective.measures,
        objective.comparison,
        objective.threshold,
        objective.clear_line,
        points,
        tuple(windows(timed, end)),
        over,
        saturation(objective.measures, objective.comparison, objective.threshold, points, over),
    )


def windows(
    states: Sequence[tuple[datetime, VerdictState]], end: datetime
) -> list[tuple[datetime, datetime]]:
    """Contiguous stretches judged in breach, [first breach pass, first pass after)."""
    windows: list[tuple[datetime, datetime]] = []
    opened: datetime | None = None
    breach = VerdictState.BREACH
    for ts, state in states:
        if opened is None and state is not breach:
            continue  # most passes: not in breach, none open
        if state is breach and opened is None:
            opened = ts
        elif state is not breach and opened is not None:
            windows.append((opened, ts))
            opened = None
    if opened is not None:
        windows.append((opened, end))
    return windows


def exceeded(
    states: Sequence[tuple[datetime, VerdictState]], end: datetime
) -> list[tuple[datetime, datetime]]:
    """The stretches judged in breach, each from the first of the ``pending`` passes that
    led to it: the objective was past its threshold through its ``for`` window too, and
    a policy that reacts sooner shortens exactly that."""
    stretches: list[tuple[datetime, datetime]] = []
    run: datetime | None = None  # the first pending pass of the current run
    opened: datetime | None = None
    for ts, state in states:
        if state is VerdictState.BREACH:
            if opened is None:
                opened = run if run is not None else ts
        elif opened is not None:
            stretches.append((opened, ts))
            opened = None
        run = (run or ts) if state is VerdictState.PENDING else None
    if opened is not None:
        stretches.append((opened, end))
    return stretches


def union(stretches: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching stretches merged, in order: time any of them covers."""
    merged: list[tuple[datetime, datetime]] = []
    for start, stop in sorted(stretches):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def markers_from(policy: str, records: list[dict[str, object]]) -> list[Marker]:
    markers = []
    for record in records:
        if record.get("policy") != policy:
            continue
        ts = datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
        kind, action = record.get("kind"), record.get("action")
        reason = str(record.get("reason") or "")
        params, before, after = (_mapping(record.get(k)) for k in ("params", "before", "after"))
        kind_of: MarkerKind | None = None
        if kind == "escalation":
            markers.append(Marker(ts, "escalation", str(action) if action else None, reason))
        elif kind == "result" and record.get("outcome") == "succeeded":
            kind_of = "acted"
        elif kind == "decision" and record.get("outcome") == "would-run":
            kind_of = "would-run"
        elif kind == "decision" and record.get("decision") in ("deny", "pending-approval"):
            kind_of = "denied" if record.get("decision") == "deny" else "pending-approval"
        if kind_of is not None:
            guard = str(record.get("guard") or "") if kind_of == "denied" else None
            markers.append(Marker(ts, kind_of, str(action), reason, guard, params, before, after))
    return markers


def _mapping(value: object) -> dict[str, object]:
    return dict(value) if isinstance(value, dict) else {}


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
