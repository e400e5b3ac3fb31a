"""What the status page shows, gathered into plain values: "why did it act?".

The reconcilers remember verdict *states*, actions, breakers and what is pending; the
values, reasons and decisions behind them are in the audit log. So the page reads the
audit file's tail (newest first, bounded) and folds it with each reconciler's memory.
Gathering is pure over those inputs, so the page can be rendered and tested from data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller import capacity
from controller.audit.chain import SNAPSHOT
from controller.config import Settings
from controller.core.breaker import BreakerState
from controller.core.budget import HOUR, window_count
from controller.durations import format_duration
from controller.loop import Loop
from controller.memory import ApprovalRequest, target_key
from controller.model import ResourceState, VerdictState
from controller.reconcile import PassResult, Reconciler
from controller.track import Point

RECENT = 20  # audit lines listed at the bottom of the page
MAX_SHOWN = 50  # targets shown in full; an estate's others are counted per policy
TAIL_LIMIT = 4 << 20  # bytes read back from the end of the audit file, at most
MIN_REFRESH = 5  # seconds: the page reloads once per interval, never faster than this
DECIDING = frozenset({"decision", "intent", "result"})  # kinds that carry a decision


@dataclass(frozen=True)
class AuditLine:
    """One audit record, as the page lists it."""

    ts: str
    policy: str
    kind: str
    action: str | None
    decision: str | None
    guard: str | None
    outcome: str | None
    reason: str
    approval_id: str | None = None
    because: str = ""  # the objectives in breach when the line was written, and why
    change: str = ""  # what it changed, or meant to: "minReplicas 1 → 2"

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> AuditLine:
        def text(key: str) -> str | None:
            value = record.get(key)
            return None if value is None else str(value)

        return cls(
            ts=str(record.get("ts", "")),
            policy=str(record.get("policy", "")),
            kind=str(record.get("kind", "")),
            action=text("action"),
            decision=text("decision"),
            guard=text("guard"),
            outcome=text("outcome"),
            reason=str(record.get("reason", "")),
            approval_id=text("approval_id"),
            because="; ".join(
                f"{v.get('objective')}: {v.get('reason')}"
                for v in record.get("verdicts") or []
                if isinstance(v, Mapping) and v.get("state") == "breach"
            ),
            change=_change_of(record),
        )


def _change_of(record: Mapping[str, Any]) -> str:
    before, after = record.get("before") or {}, record.get("after") or {}
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return ""
    if not after and record.get("params"):  # a decision: what it would set
        after = record["params"]
    return capacity.change(before, after) if after else ""


@dataclass(frozen=True)
class ObjectiveView:
    name: str
    measures: str
    comparison: str
    threshold: float
    value: float | None
    state: str
    reason: str
    as_of: str | None  # when that value was seen (the pass, or the audit line)


@dataclass(frozen=True)
class BreakerView:
    action: str
    state: str  # closed | open | half-open
    opened_at: datetime | None
    consecutive_bad: int


@dataclass(frozen=True)
class BudgetView:
    what: str  # "all actions", or one action's name
    used: int
    limit: int
    window: str


@dataclass(frozen=True)
class PolicyView:
    """One policy at a glance (or the fleet's total): how many targets it runs, and how
    many are in trouble."""

    policy: str
    targets: int
    breaching: int  # a known state of breach
    unknown: int  # no verdict yet, or signals that could not be read
    failing: int  # passes failing (the resource or the audit could not be reached)
    acting: int = 0  # an action ran and waits to be judged, or ran in the latest pass
    breakers_open: int = 0  # open breakers, one per target and action
    approvals: int = 0  # requests waiting for an operator's answer


@dataclass(frozen=True)
class ApprovalView:
    """A rung waiting for an operator: what, on what, since when, until when, and how."""

    id: str
    action: str
    change: str  # "cpu 0.5 → 1" (or its params when the request's line is not in the tail)
    asked_at: datetime
    expires_at: datetime
    expired: bool
    answer: str | None


@dataclass(frozen=True)
class TrackView:
    """The recent passes of one target, for the page's chart."""

    objectives: tuple[tuple[str, str, float], ...]  # name, comparison, threshold
    points: tuple[Point, ...]
    unit: str  # what the capacity line counts


@dataclass(frozen=True)
class TargetView:
    policy: str
    target: str
    kind: str
    last_pass: datetime | None
    failures: int  # consecutive failed passes
    now_reason: str | None  # why the latest pass did what it did (or nothing)
    objectives: tuple[ObjectiveView, ...]
    last_decision: AuditLine | None
    last_action: AuditLine | None  # the newest line with an outcome: what it last did
    breakers: tuple[BreakerView, ...]
    budgets: tuple[BudgetView, ...]
    verifying: str | None
    approval: ApprovalView | None
    capacity: str | None = None  # as last read from Azure
    capacity_at: datetime | None = None
    track: TrackView | None = None
    unknown: tuple[str, ...] = ()  # "objective: cause" for each objective not known now


@dataclass(frozen=True)
class Status:
    now: datetime
    mode: str
    role: str
    paused: str | None  # why acting is paused, or None when it is not (or not known)
    pause_known: bool  # whether ``paused`` comes from a check, not only from past decisions
    ready: bool | None  # None: no readiness checks wired
    not_ready: tuple[str, ...]  # "check: problem" for each failing check
    refresh: int  # seconds between reloads
    targets: tuple[TargetView, ...]  # the worst first, at most MAX_SHOWN
    recent: tuple[AuditLine, ...]
    policies: tuple[PolicyView, ...] = ()
    hidden: int = 0  # targets not shown (all of them healthy, or the least troubled)
    fleet: PolicyView | None = None  # every policy's counts, summed


def refresh_seconds(loop: Loop) -> int:
    """The shortest target interval, at least :data:`MIN_REFRESH`."""
    intervals = [loop.interval_of(r) for r in loop.reconcilers]
    shortest = min(intervals, default=timedelta(seconds=30))
    return max(MIN_REFRESH, int(shortest.total_seconds()))


def pause_check(settings: Settings) -> Callable[[], str | None]:
    """The controller-wide switches (setting, pause file): local, so cheap per request.
    The tag switches need Azure reads; the page shows them through the last decisions."""

    def paused() -> str | None:
        if settings.pause:
            return "paused by REMEDIATOR_PAUSE"
        if settings.pause_path.exists():
            return f"paused by {settings.pause_path}"
        return None

    return paused


def read_tail(
    path: Path, policies: Sequence[str], recent: int = RECENT, limit: int = TAIL_LIMIT
) -> list[dict[str, Any]]:
    """Audit records newest first: enough for ``recent`` lines and, per policy, its
    latest line, decision and action — or whatever ``limit`` bytes from the end hold."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    decided: set[str] = set()
    acted: set[str] = set()
    wanted = set(policies)
    for raw in _lines_backwards(path, limit):
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # a line being written right now, or torn by a crash
        if not isinstance(record, dict) or record.get("kind") == SNAPSHOT:
            continue  # not a record; or the memory heading a rotated-in file, no target's
        found.append(record)
        name = str(record.get("policy"))
        seen.add(name)
        if record.get("kind") in DECIDING:
            decided.add(name)
        if record.get("outcome"):
            acted.add(name)
        if len(found) >= recent and wanted <= seen and wanted <= decided and wanted <= acted:
            break
    return found


def _lines_backwards(path: Path, limit: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        pos = file.seek(0, os.SEEK_END)
        carry = b""
        read = 0
        while pos > 0 and read < limit:
            size = min(chunk, pos, limit - read)
            pos -= size
            file.seek(pos)
            lines = (file.read(size) + carry).split(b"\n")
            read += size
            carry = lines[0]  # may begin before this chunk
            yield from (line for line in reversed(lines[1:]) if line.strip())
        if pos == 0 and carry.strip():
            yield carry


def gather(
    loop: Loop,
    now: datetime,
    records: Sequence[Mapping[str, Any]],
    *,
    mode: str | None = None,
    role: str = "single",
    paused: str | None = None,
    pause_known: bool = False,
    readiness: tuple[bool, Mapping[str, Any]] | None = None,
    passes: Mapping[str, PassResult] | None = None,
    recent: int = RECENT,
) -> Status:
    """Fold the reconcilers' memory with the audit tail (``records``, newest first).

    An estate can hold thousands of targets: the page shows a line per policy, and the
    targets in the most trouble (at most :data:`MAX_SHOWN`), each in full."""
    by_target: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (str(record.get("policy")), str(record.get("target", "")).lower())
        by_target.setdefault(key, []).append(record)
    latest = passes or {}
    ranked = sorted(loop.reconcilers, key=lambda r: _trouble(r, loop, latest), reverse=True)
    policies = _policies(loop, now, latest)
    shown = ranked[:MAX_SHOWN]
    targets = tuple(_target(r, loop, now, by_target, passes or {}) for r in shown)
    if paused is None and not pause_known:
        paused = next(
            (
                f"{t.policy}: {t.last_decision.reason} (at {t.last_decision.ts})"
                for t in targets
                if t.last_decision is not None and t.last_decision.guard == "paused"
            ),
            None,
        )
    newest_mode = next((str(r["mode"]) for r in records if r.get("mode")), None)
    return Status(
        now=now,
        mode=mode or (f"{newest_mode} (per the audit log)" if newest_mode else "unknown"),
        role=role,
        paused=paused,
        pause_known=pause_known,
        ready=None if readiness is None else readiness[0],
        not_ready=() if readiness is None else _failing(readiness[1]),
        refresh=refresh_seconds(loop),
        targets=targets,
        recent=tuple(AuditLine.of(r) for r in records[:recent]),
        policies=policies,
        hidden=len(ranked) - len(shown),
        fleet=_total(policies),
    )


def _trouble(
    reconciler: Reconciler, loop: Loop, passes: Mapping[str, PassResult]
) -> tuple[int, int]:
    """How much a target needs a look: failing passes, a breach, unknown data, the rest."""
    states = set(reconciler.memory.last_known.values())
    if _unknown_now(reconciler, passes):
        states.add(VerdictState.UNKNOWN)
    worst = max((_SEVERITY[s] for s in states), default=_SEVERITY[VerdictState.UNKNOWN])
    return loop.health.failures.get(reconciler.key, 0), worst


def _latest(reconciler: Reconciler, passes: Mapping[str, PassResult]) -> PassResult | None:
    return passes.get(target_key(reconciler.policy.name, reconciler.policy.target.resource_id))


def _unknown_now(reconciler: Reconciler, passes: Mapping[str, PassResult]) -> bool:
    """No verdict known yet, or the latest pass could not tell an objective's state."""
    latest = _latest(reconciler, passes)
    if latest is not None and any(v.state is VerdictState.UNKNOWN for v in latest.verdicts):
        return True
    return not reconciler.memory.last_known


def _acting(reconciler: Reconciler, passes: Mapping[str, PassResult]) -> bool:
    latest = _latest(reconciler, passes)
    return reconciler.memory.pending is not None or (
        latest is not None and latest.outcome is not None
    )


_SEVERITY = {
    VerdictState.OK: 0,
    VerdictState.PENDING: 1,
    VerdictState.RECOVERING: 2,
    VerdictState.UNKNOWN: 3,
    VerdictState.BREACH: 4,
}


def _policies(
    loop: Loop, now: datetime, passes: Mapping[str, PassResult]
) -> tuple[PolicyView, ...]:
    counts: dict[str, list[int]] = {}
    for reconciler in loop.reconcilers:
        memory, open_for = reconciler.memory, reconciler.policy.guards.breaker.open_for
        row = counts.setdefault(reconciler.policy.name, [0] * 7)
        row[0] += 1
        row[1] += VerdictState.BREACH in memory.last_known.values()
        row[2] += _unknown_now(reconciler, passes)
        row[3] += loop.health.failures.get(reconciler.key, 0) > 0
        row[4] += _acting(reconciler, passes)
        row[5] += sum(b.state(now, open_for) is BreakerState.OPEN for b in memory.breakers.values())
        row[6] += memory.approval is not None and memory.approval.answer is None
    return tuple(PolicyView(name, *row) for name, row in sorted(counts.items()))


def _total(policies: Sequence[PolicyView]) -> PolicyView:
    sums = [sum(getattr(p, f) for p in policies) for f in _COUNTED]
    return PolicyView("all policies", *sums)


_COUNTED = ("targets", "breaching", "unknown", "failing", "acting", "breakers_open", "approvals")


def _failing(detail: Mapping[str, Any]) -> tuple[str, ...]:
    checks = detail.get("checks")
    if not isinstance(checks, Mapping):
        return ()
    return tuple(
        f"{name}: {check.get('problem', 'failing')}"
        for name, check in checks.items()
        if isinstance(check, Mapping) and not check.get("ok", True)
    )


def _target(
    reconciler: Reconciler,
    loop: Loop,
    now: datetime,
    records: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    passes: Mapping[str, PassResult],
) -> TargetView:
    policy, memory = reconciler.policy, reconciler.memory
    mine = records.get((policy.name, policy.target.resource_id.lower()), ())
    decision = next((r for r in mine if r.get("kind") in DECIDING), None)
    acted = next((r for r in mine if r.get("outcome")), None)
    approval = memory.approval
    pending = memory.pending
    last_pass = loop.health.last_tick.get(reconciler.key)
    newest = mine[0] if mine else None
    latest = passes.get(target_key(policy.name, policy.target.resource_id))
    objectives = _objectives(reconciler, newest, latest, last_pass)
    state = reconciler.state
    return TargetView(
        policy=policy.name,
        target=policy.target.resource_id,
        kind=policy.target.type,
        last_pass=last_pass,
        failures=loop.health.failures.get(reconciler.key, 0),
        now_reason=memory.last_reason,
        objectives=objectives,
        last_decision=AuditLine.of(decision) if decision is not None else None,
        last_action=AuditLine.of(acted) if acted is not None else None,
        breakers=tuple(
            BreakerView(
                name,
                b.state(now, policy.guards.breaker.open_for).value,
                b.opened_at,
                b.consecutive_bad,
            )
            for name, b in sorted(memory.breakers.items())
        ),
        budgets=_budgets(reconciler, now),
        verifying=None
        if pending is None
        else f"{pending.action} (decided {pending.decided_at:%H:%M:%S}, "
        f"judged from {pending.due:%H:%M:%S})",
        approval=None if approval is None else _approval(reconciler, approval, mine, now),
        capacity=None if state is None else capacity.of_state(state).text,
        capacity_at=reconciler.state_at,
        track=_track(reconciler, state),
        unknown=tuple(
            f"{o.name}: {o.reason or 'no verdict yet'}" for o in objectives if o.state == "unknown"
        ),
    )


def _approval(
    reconciler: Reconciler,
    request: ApprovalRequest,
    records: Sequence[Mapping[str, Any]],
    now: datetime,
) -> ApprovalView:
    """The request as an operator needs it; its before comes from the line that asked."""
    asked = next((r for r in records if r.get("approval_id") == request.id), None)
    before = asked.get("before") if asked is not None else None
    change = capacity.change(before, request.params) if isinstance(before, Mapping) else ""
    expires = request.asked_at + reconciler.policy.guards.approval_ttl
    return ApprovalView(
        request.id,
        request.action,
        change or ", ".join(f"{k} {v}" for k, v in request.params.items()) or "no parameters",
        request.asked_at,
        expires,
        now > expires,
        request.answer,
    )


def _track(reconciler: Reconciler, state: ResourceState | None) -> TrackView | None:
    points = tuple(reconciler.track.points)
    if not points:
        return None
    objectives = tuple((o.name, o.comparison, o.threshold) for o in reconciler.policy.objectives)
    unit = capacity.of_state(state).unit if state is not None else "capacity"
    return TrackView(objectives, points, unit)


def _objectives(
    reconciler: Reconciler,
    newest: Mapping[str, Any] | None,
    latest: PassResult | None,
    last_pass: datetime | None,
) -> tuple[ObjectiveView, ...]:
    """Values from the latest pass when the loop reports passes, else from the newest
    audit line (written only when something changed), else the remembered state alone."""
    seen: dict[str, Mapping[str, Any]] = {}
    as_of: str | None = None
    if latest is not None:
        seen = {v.objective: v.as_dict() for v in latest.verdicts}
        as_of = (
            f"{last_pass.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if last_pass else "the latest pass"
        )
    elif newest is not None:
        seen = {str(v.get("objective")): v for v in newest.get("verdicts") or []}
        as_of = str(newest.get("ts", ""))
    views = []
    for objective in reconciler.policy.objectives:
        verdict = seen.get(objective.name, {})
        known = reconciler.memory.last_known.get(objective.name)
        value = verdict.get("value")
        views.append(
            ObjectiveView(
                name=objective.name,
                measures=objective.measures,
                comparison=objective.comparison,
                threshold=objective.threshold,
                value=float(value) if isinstance(value, int | float) else None,
                state=str(verdict.get("state") or (known.value if known else "unknown")),
                reason=str(verdict.get("reason") or ""),
                as_of=as_of if verdict else None,
            )
        )
    return tuple(views)


def _budgets(reconciler: Reconciler, now: datetime) -> tuple[BudgetView, ...]:
    """The hourly cap, and the per-action budgets for actions this policy can take."""
    policy, history = reconciler.policy, reconciler.memory.history
    guards = policy.guards
    views = [
        BudgetView(
            "all actions",
            window_count([r.ts for r in history], now, HOUR),
            guards.max_actions_per_hour,
            format_duration(HOUR),
        )
    ]
    possible = {step.action for step in policy.remediation} | set(policy.step_back_actions)
    for budget in guards.action_budgets:
        if budget.action not in possible:
            continue
        runs = [r.ts for r in history if r.action == budget.action]
        views.append(
            BudgetView(
                budget.action,
                window_count(runs, now, budget.per),
                budget.max,
                format_duration(budget.per),
            )
        )
    return tuple(views)


class LastPasses:
    """The newest pass per target, kept through the loop's ``on_pass`` hook: the audit
    writes verdicts only when something changes, so this keeps the page's values current."""

    def __init__(self) -> None:
        self.by_target: dict[str, PassResult] = {}  # by target_key(policy, resource)

    def note(self, result: PassResult) -> None:
        self.by_target[target_key(result.policy, result.target)] = result
