"""Planning: from verdicts and the resource's current state to the next ladder step.

The ladder is walked from the top on every pass (level-based): the first step that
can still change something is proposed. Incremental steps (``scaleOut``,
``scaleUp``) repeat until they reach their limit or are judged not to have helped; a
one-shot step (``restartRevision``) runs once per breach episode. Rungs used up in the
current episode (``done_this_episode``) are skipped until the target is healthy again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.durations import format_duration
from controller.model import (
    ContainerSize,
    Proposal,
    ResourceState,
    RevisionInfo,
    Verdict,
    VerdictState,
)
from controller.policy.schema import (
    Policy,
    RaiseThroughput,
    RebootCache,
    RestartRevision,
    RollbackRevision,
    ScaleCache,
    ScaleOut,
    ScaleUp,
    Step,
)
from controller.sizes import (
    memory_for,
    next_cache_size,
    next_cpu_step,
    parse_memory_gib,
    throughput_after,
)

ONE_SHOT_ACTIONS = frozenset({"restartRevision", "rebootCache", "rollbackRevision"})
# Container Apps actions that change the template: each makes a new revision
REVISION_SCOPE = frozenset({"scaleOut", "scaleIn", "scaleUp", "scaleDown"})


@dataclass(frozen=True)
class NoProposal:
    """Nothing to do, and why. ``needs_human``: a breach nothing here can fix (the policy
    only watches, or every rung is used up) — a person must be told."""

    reason: str
    needs_human: bool = False


def plan(
    policy: Policy,
    verdicts: Sequence[Verdict],
    state: ResourceState,
    done_this_episode: Collection[int] = (),
    now: datetime | None = None,
) -> Proposal | NoProposal:
    """Propose the next step for a breach, or say why there is none (``now`` dates the
    breach for rules that depend on it, such as a rollback's window)."""
    idle = nothing_to_do(policy, verdicts)
    if idle is not None:
        return idle
    watched = policy.escalate_only
    breaches = [
        v for v in verdicts if v.state is VerdictState.BREACH and v.objective not in watched
    ]
    why = "; ".join(f"{v.objective}: {v.reason}" for v in breaches)
    exhausted: list[str] = []
    for index, step in enumerate(policy.remediation):
        if index in done_this_episode:
            exhausted.append(f"{step.action} already used in this breach")
            continue
        proposal = _propose(policy, index, step, state, why, now)
        if isinstance(proposal, Proposal):
            return proposal
        exhausted.append(proposal.reason)
    return NoProposal("ladder exhausted: " + "; ".join(exhausted), needs_human=True)


def nothing_to_do(policy: Policy, verdicts: Sequence[Verdict]) -> NoProposal | None:
    """Why no step is needed, decided before the resource is read; None when one may be."""
    watched = policy.escalate_only
    breached = [v for v in verdicts if v.state is VerdictState.BREACH]
    if not breached:
        states = sorted({v.state.value for v in verdicts})
        return NoProposal(f"no objective in breach ({', '.join(states)})")
    if all(v.objective in watched for v in breached):
        names = ", ".join(v.objective for v in breached)
        return NoProposal(f"escalate only: {names} cannot be fixed by an action", True)
    if not policy.remediation:
        return NoProposal("watch only: the policy has no remediation ladder", needs_human=True)
    return None


def _propose(
    policy: Policy, index: int, step: Step, state: ResourceState, why: str, now: datetime | None
) -> Proposal | NoProposal:
    params = step.params
    if isinstance(params, ScaleOut | ScaleUp) and state.traffic_pinned:
        return NoProposal(pinned_reason(step.action, state))
    if isinstance(params, ScaleOut):
        return _scale_out(index, params, state, why)
    if isinstance(params, ScaleUp):
        return _scale_up(policy, index, params, state, why)
    if isinstance(params, RestartRevision):
        return _restart(index, state, why)
    if isinstance(params, RollbackRevision):
        return _rollback(index, params, state, why, now)
    if isinstance(params, RaiseThroughput):
        return _raise_throughput(policy, index, params, state, why)
    if isinstance(params, ScaleCache):
        return _scale_cache(policy, index, params, state, why)
    if isinstance(params, RebootCache):
        return _reboot_cache(index, params, state, why)
    raise AssertionError(f"unplanned step {step.action}")


def _scale_out(index: int, step: ScaleOut, state: ResourceState, why: str) -> Proposal | NoProposal:
    """Raise the floor above what runs now: an autoscaler may already run more than the
    minimum, and a floor below that would change nothing."""
    current = max(state.min_replicas, state.replicas or 0)
    wanted = min(current + step.step, step.max_replicas)
    if wanted <= current:
        return NoProposal(f"scaleOut at its limit ({current} of {step.max_replicas} replicas)")
    before = {"minReplicas": state.min_replicas, "maxReplicas": state.max_replicas}
    after = {"minReplicas": wanted, "maxReplicas": max(state.max_replicas, wanted)}
    return Proposal("scaleOut", index, after, before, after, why)


def _scale_up(
    policy: Policy, index: int, step: ScaleUp, state: ResourceState, why: str
) -> Proposal | NoProposal:
    container = _container(state, step.container)
    if container is None:
        return NoProposal(f"scaleUp: no container {step.container or ''} on the app".strip())
    memory = parse_memory_gib(container.memory) if container.memory else 0.0
    cpu = next_cpu_step(container.cpu, step.max_cpu, memory)
    if cpu is None:
        return NoProposal(
            f"scaleUp at its limit ({container.cpu:g} cores, {container.memory} of "
            f"{step.max_cpu:g} cores)"
        )
    before = {"container": container.name, "cpu": container.cpu, "memory": container.memory}
    after = {"container": container.name, "cpu": cpu, "memory": memory_for(cpu)}
    return Proposal("scaleUp", index, after, before, after, why)


def pinned_reason(action: str, state: ResourceState) -> str:
    """Why a template change is refused while traffic is pinned to named revisions."""
    serving = ", ".join(f"{r.name} {r.traffic}%" for r in state.revisions if r.traffic > 0)
    return (
        f"{action}: traffic is pinned to named revisions ({serving or 'none'}); a scale or "
        "size change makes a new revision from the latest template, which would take 0 % "
        "of it: nothing is changed, a person must scale what serves"
    )


def serving_revision(state: ResourceState) -> str | None:
    """The revision users are served by now: the newest of those taking traffic (multiple
    mode), else the newest ready one (single mode: a revision still provisioned does not
    serve yet)."""
    serving = [r for r in state.revisions if r.traffic > 0 and r.active]
    if serving:
        return max(serving, key=lambda r: (r.traffic, _created(r))).name
    return state.latest_revision


def _restart(index: int, state: ResourceState, why: str) -> Proposal | NoProposal:
    revision = serving_revision(state)
    if revision is None:
        return NoProposal("restartRevision: the app has no active revision")
    params = {"revision": revision}
    return Proposal("restartRevision", index, params, params, params, why)


def _rollback(
    index: int, step: RollbackRevision, state: ResourceState, why: str, now: datetime | None
) -> Proposal | NoProposal:
    """All traffic back to the revision that served before the newest deploy took traffic.

    A deploy is a revision whose build (images and settings) differs from the one before
    it; a revision a scale or size change made has its predecessor's build and is not one:
    it is neither what is rolled back from (the deploy it was made from is, and the window
    counts from that) nor what is rolled back to. The target is an older revision of
    another build — one still taking a share if there is one (a split deploy), else the
    newest — active, and not reported unhealthy."""
    if not state.multiple_revisions:
        return NoProposal("rollbackRevision: the app is in single-revision mode")
    serving = [r for r in state.revisions if r.traffic > 0]
    if not serving:
        return NoProposal("rollbackRevision: no revision takes traffic")
    newest = max(serving, key=_created)
    deploy = _deploy_of(newest, state.revisions)
    if now is not None and deploy.created is not None and now - deploy.created > step.within:
        return NoProposal(
            f"rollbackRevision: {deploy.name} has served since {deploy.created:%Y-%m-%d %H:%M}, "
            f"longer than the policy's {format_duration(step.within)}: not a fresh deploy"
        )
    older = [
        r
        for r in state.revisions
        if _created(r) < _created(deploy)
        and r.active
        and r.healthy is not False
        and (r.build is None or r.build != deploy.build)
    ]
    if not older:
        return NoProposal(
            f"rollbackRevision: no active, healthy revision of another build older than "
            f"{deploy.name}"
        )
    # one still taking a share of traffic has served for sure; else the newest of the rest
    previous = max(older, key=lambda r: (r.traffic > 0, _created(r)))
    before = {"traffic": {r.name: r.traffic for r in serving}}
    after = {"traffic": {previous.name: 100}}
    params = {"revision": previous.name, "from": newest.name}
    return Proposal("rollbackRevision", index, params, before, after, why)


def _deploy_of(revision: RevisionInfo, revisions: Sequence[RevisionInfo]) -> RevisionInfo:
    """The deploy ``revision`` belongs to: going back through older revisions of the same
    build (made by scale or size changes), the first of them."""
    if revision.build is None:
        return revision
    deploy = revision
    for older in sorted(revisions, key=_created, reverse=True):
        if _created(older) >= _created(deploy):
            continue
        if older.build != revision.build:
            break
        deploy = older
    return deploy


def _created(revision: RevisionInfo) -> datetime:
    return revision.created or datetime.min.replace(tzinfo=UTC)


def _raise_throughput(
    policy: Policy, index: int, step: RaiseThroughput, state: ResourceState, why: str
) -> Proposal | NoProposal:
    offer = state.throughput
    if offer is None:
        return NoProposal("raiseThroughput: the target has no throughput offer")
    if offer.pending:
        return NoProposal("raiseThroughput: an offer change is still pending (offerReplacePending)")
    autoscale = offer.manual is None
    current = offer.provisioned
    ceiling = min(step.max_throughput, policy.guards.bounds.max_throughput or step.max_throughput)
    limit = f"{ceiling} RU/s, the policy's ceiling"
    instant = offer.instant_maximum
    if not step.allow_partition_split and instant is not None and instant < ceiling:
        ceiling = instant
        limit = f"{instant} RU/s, the instant maximum (past it, a split: allowPartitionSplit)"
    unit = 1000 if autoscale else 100
    wanted = min(throughput_after(current, step.step, autoscale, up=True), ceiling // unit * unit)
    if wanted <= current:
        return NoProposal(f"raiseThroughput at its limit ({current} RU/s of {limit})")
    key = "maxThroughput" if autoscale else "throughput"
    return Proposal("raiseThroughput", index, {key: wanted}, {key: current}, {key: wanted}, why)


def _scale_cache(
    policy: Policy, index: int, step: ScaleCache, state: ResourceState, why: str
) -> Proposal | NoProposal:
    sku = state.cache
    if sku is None:
        return NoProposal("scaleCache: the target is not a cache")
    if state.cache_state not in (None, "Succeeded"):
        return NoProposal(f"scaleCache: the cache is {state.cache_state}, not Succeeded")
    ceiling = min(step.max_capacity, policy.guards.bounds.max_cache_capacity or step.max_capacity)
    bigger = next_cache_size(sku.name, sku.capacity, ceiling, step.allow_tier_change)
    if bigger is None:
        return NoProposal(
            f"scaleCache at its limit ({sku.name} {sku.family}{sku.capacity}, "
            f"maxCapacity {ceiling})"
        )
    tier, family, capacity = bigger
    before = {"sku": sku.name, "family": sku.family, "capacity": sku.capacity}
    after = {"sku": tier, "family": family, "capacity": capacity}
    return Proposal("scaleCache", index, after, before, after, why)


def _reboot_cache(
    index: int, step: RebootCache, state: ResourceState, why: str
) -> Proposal | NoProposal:
    if state.cache is None:
        return NoProposal("rebootCache: the target is not a cache")
    params: dict[str, object] = {"rebootType": step.reboot_type}
    if step.shard_id is not None:
        params["shardId"] = step.shard_id
    return Proposal("rebootCache", index, params, {}, {**params, "rebooted": True}, why)


def _container(state: ResourceState, name: str | None) -> ContainerSize | None:
    for container in state.containers:
        if name is None or container.name == name:
            return container
    return None
