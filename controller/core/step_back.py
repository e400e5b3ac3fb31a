"""Stepping back toward the declared baseline once the target has been healthy a while.

One step at a time, in the reverse of the ladder's order (CPU down first, then
replicas in), never below the baseline, only after every objective has been ``ok``
for ``stableFor`` (unknown data resets that), no sooner than the step-back cooldown
after the last action — and never when the smaller size is projected to breach again
(Azure autoscale's flapping check): the worst value of the recent window is scaled by
the capacity that would be removed and checked against each objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from controller.core.evaluate import holds
from controller.core.plan import NoProposal, pinned_reason
from controller.model import ActionRecord, Proposal, ResourceState, Verdict, VerdictState
from controller.policy.schema import Policy, RaiseThroughput, StepBack
from controller.sizes import (
    CONTAINER_APP_CPU_STEPS,
    memory_for,
    throughput_after,
    throughput_floor,
)

AT_BASELINE = "at baseline"  # why no step back is proposed once there is nothing to undo


def when_due(
    policy: Policy,
    verdicts: Sequence[Verdict],
    ok_since: datetime | None,
    history: Sequence[ActionRecord],
    now: datetime,
) -> NoProposal | None:
    """Why stepping back is not due yet (decided without reading the resource), or None."""
    rule = policy.step_back
    if rule is None:
        return NoProposal("all objectives met")
    if not verdicts or any(v.state is not VerdictState.OK for v in verdicts):
        return NoProposal("all objectives met" if ok_since else "not yet healthy")
    if ok_since is None or now - ok_since < rule.stable_for:
        since = ok_since or now
        return NoProposal(
            f"healthy since {since:%H:%M:%S}; may step back at {since + rule.stable_for:%H:%M:%S}"
        )
    if history:
        last = max(r.ts for r in history)
        if now - last < rule.cooldown:
            return NoProposal(
                f"step back waits for its cooldown until {last + rule.cooldown:%H:%M:%S}"
            )
    return None


def when_due_changes(
    policy: Policy, ok_since: datetime | None, history: Sequence[ActionRecord], now: datetime
) -> datetime | None:
    """When :func:`when_due`'s answer for healthy verdicts may next change after ``now``
    (None: not while they stay healthy), so a replay need not ask it again before."""
    rule = policy.step_back
    if rule is None:
        return None
    if ok_since is None:
        return now
    if now - ok_since < rule.stable_for:
        return ok_since + rule.stable_for
    if history:
        last = max(r.ts for r in history)
        if now - last < rule.cooldown:
            return last + rule.cooldown
    return None


def propose(
    policy: Policy, verdicts: Sequence[Verdict], state: ResourceState
) -> Proposal | NoProposal:
    """The next step toward the baseline, if it would not breach again."""
    rule = policy.step_back
    assert rule is not None
    step = (
        _lower_throughput(policy, rule, state) or _scale_down(rule, state) or _scale_in(rule, state)
    )
    if step is None:
        return NoProposal(AT_BASELINE)
    proposal, factor, percent_only = step
    if state.traffic_pinned and proposal.action in ("scaleDown", "scaleIn"):
        return NoProposal(f"step back held: {pinned_reason(proposal.action, state)}")
    for verdict in verdicts:
        objective = next(o for o in policy.objectives if o.name == verdict.objective)
        worst = verdict.worst if verdict.worst is not None else verdict.value
        if worst is None:
            return NoProposal("step back held: no value to project from")
        scales = not percent_only or "percent" in objective.measures.lower()
        projected = worst * factor if scales else worst
        if not holds(objective.comparison, projected, objective.threshold):
            return NoProposal(
                f"step back held: {verdict.objective} would be {projected:.4g} after "
                f"{proposal.action}, against objective {objective.comparison} "
                f"{objective.threshold:g}"
            )
    return proposal


def _lower_throughput(
    policy: Policy, rule: StepBack, state: ResourceState
) -> tuple[Proposal, float, bool] | None:
    """One step of the ladder's raise, undone: never below the baseline nor the offer's
    minimum. Every objective is projected (RU consumption grows as throughput shrinks)."""
    offer = state.throughput
    if offer is None or rule.baseline.throughput is None or offer.pending:
        return None
    autoscale = offer.manual is None
    floor = throughput_floor(max(rule.baseline.throughput, offer.minimum), autoscale)
    current = offer.provisioned
    if current <= floor:
        return None
    raises = [s.params for s in policy.remediation if isinstance(s.params, RaiseThroughput)]
    step = raises[0].step if raises else current - floor
    wanted = max(throughput_after(current, step, autoscale, up=False), floor)
    key = "maxThroughput" if autoscale else "throughput"
    why = f"healthy for {rule.stable_for}; stepping back toward {rule.baseline.throughput} RU/s"
    proposal = Proposal("lowerThroughput", -1, {key: wanted}, {key: current}, {key: wanted}, why)
    return proposal, current / wanted, False


def _scale_down(rule: StepBack, state: ResourceState) -> tuple[Proposal, float, bool] | None:
    if rule.baseline.cpu is None:
        return None
    container = next((c for c in state.containers if rule.container in (None, c.name)), None)
    if container is None or container.cpu <= rule.baseline.cpu + 1e-9:
        return None
    lower = [c for c in CONTAINER_APP_CPU_STEPS if rule.baseline.cpu - 1e-9 <= c < container.cpu]
    cpu = max(lower)
    before = {"container": container.name, "cpu": container.cpu, "memory": container.memory}
    after = {"container": container.name, "cpu": cpu, "memory": memory_for(cpu)}
    why = f"healthy for {rule.stable_for}; stepping back toward {rule.baseline.cpu:g} cores"
    return Proposal("scaleDown", -1, after, before, after, why), container.cpu / cpu, True


def _scale_in(rule: StepBack, state: ResourceState) -> tuple[Proposal, float, bool] | None:
    floor = rule.baseline.min_replicas
    if state.min_replicas <= floor:
        return None
    wanted = state.min_replicas - 1
    before = {"minReplicas": state.min_replicas, "maxReplicas": state.max_replicas}
    after = {"minReplicas": wanted, "maxReplicas": state.max_replicas}
    why = f"healthy for {rule.stable_for}; stepping back toward the baseline of {floor} replicas"
    factor = state.min_replicas / max(wanted, 1)
    return Proposal("scaleIn", -1, after, before, after, why), factor, False
