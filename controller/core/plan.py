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

from controller.model import ContainerSize, Proposal, ResourceState, Verdict, VerdictState
from controller.policy.schema import Policy, RestartRevision, ScaleOut, ScaleUp, Step
from controller.sizes import memory_for, next_cpu_step, parse_memory_gib

ONE_SHOT_ACTIONS = frozenset({"restartRevision"})


@dataclass(frozen=True)
class NoProposal:
    """Nothing to do, and why."""

    reason: str


def plan(
    policy: Policy,
    verdicts: Sequence[Verdict],
    state: ResourceState,
    done_this_episode: Collection[int] = (),
) -> Proposal | NoProposal:
    """Propose the next step for a breach, or say why there is none."""
    idle = nothing_to_do(policy, verdicts)
    if idle is not None:
        return idle
    breaches = [v for v in verdicts if v.state is VerdictState.BREACH]
    why = "; ".join(f"{v.objective}: {v.reason}" for v in breaches)
    exhausted: list[str] = []
    for index, step in enumerate(policy.remediation):
        if index in done_this_episode:
            exhausted.append(f"{step.action} already used in this breach")
            continue
        proposal = _propose(policy, index, step, state, why)
        if isinstance(proposal, Proposal):
            return proposal
        exhausted.append(proposal.reason)
    return NoProposal("ladder exhausted: " + "; ".join(exhausted))


def nothing_to_do(policy: Policy, verdicts: Sequence[Verdict]) -> NoProposal | None:
    """Why no step is needed, decided before the resource is read; None when one may be."""
    if not any(v.state is VerdictState.BREACH for v in verdicts):
        states = sorted({v.state.value for v in verdicts})
        return NoProposal(f"no objective in breach ({', '.join(states)})")
    if not policy.remediation:
        return NoProposal("watch only: the policy has no remediation ladder")
    return None


def _propose(
    policy: Policy, index: int, step: Step, state: ResourceState, why: str
) -> Proposal | NoProposal:
    params = step.params
    if isinstance(params, ScaleOut):
        return _scale_out(index, params, state, why)
    if isinstance(params, ScaleUp):
        return _scale_up(policy, index, params, state, why)
    if isinstance(params, RestartRevision):
        return _restart(index, state, why)
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


def _restart(index: int, state: ResourceState, why: str) -> Proposal | NoProposal:
    if state.latest_revision is None:
        return NoProposal("restartRevision: the app has no active revision")
    params = {"revision": state.latest_revision}
    return Proposal("restartRevision", index, params, params, params, why)


def _container(state: ResourceState, name: str | None) -> ContainerSize | None:
    for container in state.containers:
        if name is None or container.name == name:
            return container
    return None
