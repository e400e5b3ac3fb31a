"""Planning the next ladder step from verdicts and the app's current size."""

from __future__ import annotations

from controller.core.plan import NoProposal, plan
from controller.model import ContainerSize, Proposal, ResourceState, Verdict, VerdictState
from tests.conftest import make_policy

BREACH = (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "breach"),)
LADDER = [
    {"scaleOut": {"step": 2, "maxReplicas": 5}},
    {"scaleUp": {"maxCpu": 1.0}},
    {"restartRevision": {}},
]


def app(min_replicas: int = 1, max_replicas: int = 10, cpu: float = 0.5) -> ResourceState:
    return ResourceState(
        "app", min_replicas, max_replicas, (ContainerSize("api", cpu, f"{cpu * 2:g}Gi"),), "r1"
    )


def step(state: ResourceState, done: set[int] | None = None) -> Proposal | NoProposal:
    return plan(make_policy(remediation=LADDER), BREACH, state, done or set())


def test_nothing_is_proposed_without_a_breach() -> None:
    """ok, recovering and unknown objectives never produce a step."""
    for state in (VerdictState.OK, VerdictState.RECOVERING, VerdictState.UNKNOWN):
        verdicts = (Verdict("cpu", state, 65.0, 70.0, "x"),)
        assert isinstance(plan(make_policy(remediation=LADDER), verdicts, app()), NoProposal)


def test_scale_out_by_its_step_up_to_its_limit() -> None:
    """minReplicas rises by the step, clipped to the step's maxReplicas."""
    first = step(app(1))
    assert isinstance(first, Proposal)
    assert first.action == "scaleOut"
    assert first.after == {"minReplicas": 3, "maxReplicas": 10}
    clipped = step(app(4))
    assert isinstance(clipped, Proposal)
    assert clipped.after["minReplicas"] == 5


def test_scale_out_raises_max_replicas_only_when_needed() -> None:
    """An app capped below the new minimum gets its maximum raised to match, no further."""
    proposal = step(app(1, max_replicas=2))
    assert isinstance(proposal, Proposal)
    assert proposal.after == {"minReplicas": 3, "maxReplicas": 3}


def test_exhausted_scale_out_moves_to_scale_up_with_a_valid_pair() -> None:
    """At the replica limit, the next rung gives the next CPU/memory pair Container Apps takes."""
    proposal = step(app(5, cpu=0.5))
    assert isinstance(proposal, Proposal)
    assert proposal.action == "scaleUp"
    assert proposal.after == {"container": "api", "cpu": 0.75, "memory": "1.5Gi"}


def test_restart_runs_once_per_breach_episode_then_the_ladder_is_exhausted() -> None:
    """A one-shot step is not repeated while the same breach goes on."""
    proposal = step(app(5, cpu=1.0))
    assert isinstance(proposal, Proposal)
    assert proposal.action == "restartRevision"
    assert proposal.params == {"revision": "r1"}
    after = step(app(5, cpu=1.0), done={2})
    assert isinstance(after, NoProposal)
    assert "exhausted" in after.reason


def test_watch_only_policy_never_proposes() -> None:
    """A policy without a ladder watches and reports only."""
    result = plan(make_policy(remediation=[]), BREACH, app())
    assert isinstance(result, NoProposal)
    assert "watch only" in result.reason


def test_scale_up_never_takes_memory_away() -> None:
    """0.5 cores with 4Gi of memory goes to 2 cores / 4Gi, not 0.75 / 1.5Gi."""
    state = ResourceState("app", 5, 10, (ContainerSize("api", 0.5, "4Gi"),), "r1")
    policy = make_policy(remediation=[{"scaleUp": {"maxCpu": 2.0}}])
    proposal = plan(policy, BREACH, state)
    assert isinstance(proposal, Proposal)
    assert proposal.after == {"container": "api", "cpu": 2.0, "memory": "4Gi"}
    capped = plan(make_policy(remediation=[{"scaleUp": {"maxCpu": 1.5}}]), BREACH, state)
    assert isinstance(capped, NoProposal)


def test_scale_out_starts_from_what_runs_now() -> None:
    """With 4 replicas running on a floor of 1, the next floor is 5, not 2."""
    state = ResourceState("app", 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1", replicas=4)
    proposal = plan(make_policy(remediation=[{"scaleOut": {"maxReplicas": 6}}]), BREACH, state)
    assert isinstance(proposal, Proposal)
    assert proposal.before["minReplicas"] == 1 and proposal.after["minReplicas"] == 5


def test_an_escalate_only_objective_never_drives_the_ladder() -> None:
    """An objective marked escalateOnly in breach asks for a person, not an action; a
    breach of an ordinary objective still climbs the ladder."""
    policy = make_policy(
        remediation=LADDER,
        objectives=[
            {
                "name": "cpu",
                "signal": {"metric": "CpuPercentage"},
                "comparison": "<",
                "threshold": 70,
            },
            {
                "name": "replicas",
                "signal": {"metric": "Replicas", "aggregation": "Minimum"},
                "comparison": ">=",
                "threshold": 1,
                "escalateOnly": True,
            },
        ],
    )
    down = (
        Verdict("cpu", VerdictState.OK, 5.0, 70.0, "ok"),
        Verdict("replicas", VerdictState.BREACH, 0.0, 1.0, "x"),
    )
    held = plan(policy, down, app())
    assert isinstance(held, NoProposal) and held.needs_human
    assert "replicas cannot be fixed" in held.reason
    both = (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "hot"), down[1])
    step_ = plan(policy, both, app())
    assert isinstance(step_, Proposal) and step_.action == "scaleOut"
    assert "replicas" not in step_.reason
