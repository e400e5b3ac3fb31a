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

from controller.audit.chain import SNAPSHOT
from controller.config import Settings
from controller.core.budget import HOUR, window_count
from controller.durations import format_duration
from controller.loop import Loop
from controller.memory import target_key
from controller.model import VerdictState
from controller.reconcile import PassResult, Reconciler

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
        )


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
    """One policy at a glance: how many targets it runs, and how many are in trouble."""

    policy: str
    targets: int
    breaching: int  # a known state of breach
    unknown: int  # no verdict yet, or signals that could not be read
    failing: int  # passes failing (the resource or the audit could not be reached)


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
    approval: str | None


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
    ranked = sorted(loop.reconcilers, key=lambda r: _trouble(r, loop), reverse=True)
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
        policies=_policies(loop),
        hidden=len(ranked) - len(shown),
    )


def _trouble(reconciler: Reconciler, loop: Loop) -> tuple[int, int]:
    """How much a target needs a look: failing passes, a breach, unknown data, the rest."""
    states = reconciler.memory.last_known.values()
    worst = max((_SEVERITY[s] for s in states), default=_SEVERITY[VerdictState.UNKNOWN])
    return loop.health.failures.get(reconciler.key, 0), worst


_SEVERITY = {
    VerdictState.OK: 0,
    VerdictState.PENDING: 1,
    VerdictState.RECOVERING: 2,
    VerdictState.UNKNOWN: 3,
    VerdictState.BREACH: 4,
}


def _policies(loop: Loop) -> tuple[PolicyView, ...]:
    counts: dict[str, list[int]] = {}
    for reconciler in loop.reconcilers:
        row = counts.setdefault(reconciler.policy.name, [0, 0, 0, 0])
        states = set(reconciler.memory.last_known.values())
        row[0] += 1
        row[1] += VerdictState.BREACH in states
        row[2] += not states or VerdictState.UNKNOWN in states
        row[3] += loop.health.failures.get(reconciler.key, 0) > 0
    return tuple(PolicyView(name, *row) for name, row in sorted(counts.items()))


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
    return TargetView(
        policy=policy.name,
        target=policy.target.resource_id,
        kind=policy.target.type,
        last_pass=last_pass,
        failures=loop.health.failures.get(reconciler.key, 0),
        now_reason=memory.last_reason,
        objectives=_objectives(reconciler, newest, latest, last_pass),
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
        approval=None
        if approval is None
        else f"{approval.id}: {approval.action} {dict(approval.params)} "
        f"(asked {approval.asked_at:%H:%M:%S}; {approval.answer or 'no answer yet'})",
    )


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
