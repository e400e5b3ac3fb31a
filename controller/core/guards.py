"""Guards: every proposal passes the kill switch, leadership, bounds, cooldown, budgets,
verification, breaker and mode, in order.

The first guard that objects denies the proposal with its reason. Actions count
against cooldown and budget whether they succeeded, failed or would have run in
dry-run: a failed attempt still touched the resource, and a dry run should show the
cadence a live run would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.core.breaker import Breaker, denies
from controller.core.budget import window_count
from controller.durations import format_duration
from controller.model import ActionRecord, Decision, DecisionKind, Mode, Proposal
from controller.policy.schema import Policy

HOUR = timedelta(hours=1)
# the guards, in the order they run: the names decisions and metrics carry
GUARDS = ("paused", "leader", "bounds", "cooldown", "budget", "fleet", "verifying", "breaker")


def check(
    policy: Policy,
    proposal: Proposal,
    history: Sequence[ActionRecord],
    now: datetime,
    mode: Mode,
    *,
    verifying: tuple[str, datetime] | None = None,
    breaker: Breaker | None = None,
    paused: str | None = None,
    fleet: str | None = None,
    standby: str | None = None,
    changed_at: datetime | None = None,
) -> Decision:
    """Run the guards in order; the first denial wins.

    ``paused`` is why the kill switch is on, if it is; ``standby`` why this replica does
    not hold the leader lease; ``verifying`` is the action still
    waiting to be judged and when; ``breaker`` is the proposed action's circuit breaker;
    ``fleet`` is why the shared budgets or the fail-static rule hold every target back;
    ``changed_at`` is when anyone last changed the resource (a deploy, a person, another
    replica that led before this one): the cooldown counts from it too.
    """
    reasons = (
        paused,
        standby,
        _bounds(policy, proposal),
        _cooldown(policy, history, now, changed_at),
        _budget(policy, proposal, history, now),
        fleet,
        _verifying(verifying),
        denies(breaker, now, policy.guards.breaker.open_for) if breaker else None,
    )
    for guard, reason in zip(GUARDS, reasons, strict=True):
        if reason is not None:
            return Decision(DecisionKind.DENY, f"{guard}: {reason}", proposal, guard)
    if mode is Mode.DRY_RUN:
        return Decision(DecisionKind.ALLOW, "guards passed; dry-run, so not applied", proposal)
    return Decision(DecisionKind.ALLOW, "guards passed", proposal)


def _bounds(policy: Policy, proposal: Proposal) -> str | None:
    """Only values the proposal changes are checked: a limit set by hand stays the owner's."""
    bounds = policy.guards.bounds
    changes = {k: v for k, v in proposal.after.items() if proposal.before.get(k) != v}
    replicas = changes.get("minReplicas")
    if isinstance(replicas, int):
        if bounds.max_replicas is not None and replicas > bounds.max_replicas:
            return f"minReplicas {replicas} would exceed the bound of {bounds.max_replicas}"
        if replicas < bounds.min_replicas:
            return f"minReplicas {replicas} would fall below the bound of {bounds.min_replicas}"
    maximum = changes.get("maxReplicas")
    ceiling = bounds.max_replicas
    if isinstance(maximum, int) and ceiling is not None and maximum > ceiling:
        return f"maxReplicas {maximum} would exceed the bound of {bounds.max_replicas}"
    cpu = changes.get("cpu")
    if isinstance(cpu, float | int) and bounds.max_cpu is not None and cpu > bounds.max_cpu:
        return f"cpu {cpu:g} would exceed the bound of {bounds.max_cpu:g} cores"
    return None


def _verifying(verifying: tuple[str, datetime] | None) -> str | None:
    """One change at a time: the next waits until the last has been judged."""
    if verifying is None:
        return None
    action, due = verifying
    return f"waiting to judge the last {action} (at {due:%H:%M:%S})"


def _cooldown(
    policy: Policy, history: Sequence[ActionRecord], now: datetime, changed_at: datetime | None
) -> str | None:
    cooldown = policy.guards.cooldown
    if history:
        last = max(history, key=lambda record: record.ts)
        since = now - last.ts
        if since < cooldown:
            return (
                f"last action ({last.action}) {format_duration(since)} ago; "
                f"cooldown is {format_duration(cooldown)}"
            )
    if changed_at is not None and now - changed_at < cooldown:
        since = max(now - changed_at, timedelta(0))
        return (
            f"the resource was changed {format_duration(since)} ago; "
            f"cooldown is {format_duration(cooldown)}"
        )
    return None


def _budget(
    policy: Policy, proposal: Proposal, history: Sequence[ActionRecord], now: datetime
) -> str | None:
    limit = policy.guards.max_actions_per_hour
    recent = window_count([r.ts for r in history], now, HOUR)
    if recent >= limit:
        return f"{recent} actions in the last hour; the budget is {limit}"
    for budget in policy.guards.action_budgets:
        if budget.action != proposal.action:
            continue
        runs = window_count([r.ts for r in history if r.action == budget.action], now, budget.per)
        if runs >= budget.max:
            return (
                f"{runs} {budget.action} in the last {format_duration(budget.per)}; "
                f"the budget is {budget.max}"
            )
    return None
