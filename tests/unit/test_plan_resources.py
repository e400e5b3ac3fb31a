"""Planning for Cosmos DB offers, Redis caches and revision rollbacks, and stepping back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core import step_back
from controller.core.plan import NoProposal, plan
from controller.model import (
    CacheSku,
    ContainerSize,
    Proposal,
    ResourceState,
    RevisionInfo,
    Throughput,
    Verdict,
    VerdictState,
)
from tests.conftest import make_policy

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
DB = f"{SUB}/Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/agentstudio"
CACHE = f"{SUB}/Microsoft.Cache/redis/redis-agentstudio-prod"
BREACH = (Verdict("cpu", VerdictState.BREACH, 25.0, 1.0, "breach"),)
OK = (Verdict("cpu", VerdictState.OK, 0.0, 1.0, "ok", worst=0.2),)


def cosmos(ladder: list[dict[str, Any]], **extra: Any) -> Any:
    return make_policy(
        target={"type": "cosmosSqlDatabase", "resourceId": DB, "region": "eastus"},
        remediation=ladder,
        **extra,
    )


def offer(manual: int | None = 4000, top: int | None = None, **kw: Any) -> ResourceState:
    throughput = Throughput(manual, top, kw.pop("minimum", 400), kw.pop("instant", 10000), **kw)
    return ResourceState(DB, throughput=throughput)


@pytest.mark.parametrize(
    ("step", "state", "after"),
    [
        ("20%", offer(4000), {"throughput": 4800}),
        (1000, offer(4000), {"throughput": 5000}),
        ("10%", offer(4050), {"throughput": 4500}),  # rounded up to hundreds
        ("20%", offer(None, 4000), {"maxThroughput": 5000}),  # autoscale: thousands
        ("20%", offer(9000), {"throughput": 10000}),  # capped at the instant maximum
    ],
)
def test_raise_throughput_steps_and_rounds_as_the_service_takes_it(
    step: str | int, state: ResourceState, after: dict[str, int]
) -> None:
    proposal = plan(
        cosmos([{"raiseThroughput": {"step": step, "maxThroughput": 20000}}]), BREACH, state
    )
    assert isinstance(proposal, Proposal)
    assert (proposal.action, proposal.after) == ("raiseThroughput", after)


def test_raise_throughput_stops_at_ceiling_instant_maximum_and_pending() -> None:
    ladder = [{"raiseThroughput": {"step": "50%", "maxThroughput": 6000}}]
    capped = plan(cosmos(ladder), BREACH, offer(5000))
    assert isinstance(capped, Proposal) and capped.after == {"throughput": 6000}
    at_limit = plan(cosmos(ladder), BREACH, offer(6000))
    assert isinstance(at_limit, NoProposal) and "6000 RU/s of 6000" in at_limit.reason
    split = [{"raiseThroughput": {"maxThroughput": 50000}}]
    held = plan(cosmos(split), BREACH, offer(10000))
    assert isinstance(held, NoProposal) and "instant maximum" in held.reason
    allowed = [{"raiseThroughput": {"maxThroughput": 50000, "allowPartitionSplit": True}}]
    past = plan(cosmos(allowed), BREACH, offer(10000))
    assert isinstance(past, Proposal) and past.after == {"throughput": 12000}
    pending = plan(cosmos(split), BREACH, offer(4000, pending=True))
    assert isinstance(pending, NoProposal) and "pending" in pending.reason


def test_bounds_cap_the_ceiling_and_a_ladder_past_them_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"maxThroughput: 20000 exceeds guards\.bounds\.maxThroughput"
    ):
        cosmos(
            [{"raiseThroughput": {"maxThroughput": 20000}}],
            guards={"bounds": {"maxThroughput": 8000}},
        )


def test_a_rung_that_does_not_fit_the_target_type_is_refused() -> None:
    with pytest.raises(ValueError, match="scaleOut: not an action for a cosmosSqlDatabase"):
        cosmos([{"scaleOut": {"maxReplicas": 3}}])


def redis(ladder: list[dict[str, Any]]) -> Any:
    return make_policy(target={"type": "redisCache", "resourceId": CACHE}, remediation=ladder)


def cache(name: str = "Standard", capacity: int = 1, state: str = "Succeeded") -> ResourceState:
    family = "P" if name == "Premium" else "C"
    return ResourceState(CACHE, cache=CacheSku(name, family, capacity), cache_state=state)


def test_scale_cache_goes_one_size_up_within_its_tier() -> None:
    ladder = [{"scaleCache": {"maxCapacity": 3}}, {"rebootCache": {}}]
    up = plan(redis(ladder), BREACH, cache(capacity=1))
    assert isinstance(up, Proposal)
    assert up.after == {"sku": "Standard", "family": "C", "capacity": 2}
    top = plan(redis(ladder), BREACH, cache(capacity=3))
    assert isinstance(top, Proposal) and top.action == "rebootCache"  # the next rung
    busy = plan(redis(ladder[:1]), BREACH, cache(state="Scaling"))
    assert isinstance(busy, NoProposal) and "Scaling" in busy.reason


def test_a_tier_change_only_where_the_policy_allows_it() -> None:
    allowed = [{"scaleCache": {"maxCapacity": 6, "allowTierChange": True, "approval": "required"}}]
    premium = plan(redis(allowed), BREACH, cache(capacity=6))
    assert isinstance(premium, Proposal)
    assert premium.after == {"sku": "Premium", "family": "P", "capacity": 4}  # 53 GB either way
    refused = plan(redis([{"scaleCache": {"maxCapacity": 6}}]), BREACH, cache(capacity=6))
    assert isinstance(refused, NoProposal)


def revisions(age: timedelta) -> ResourceState:
    return ResourceState(
        "app",
        multiple_revisions=True,
        revisions=(
            RevisionInfo("api--r1", NOW - timedelta(days=3), True, 0),
            RevisionInfo("api--r0", NOW - timedelta(days=9), True, 0),
            RevisionInfo("api--r2", NOW - age, True, 100),
        ),
    )


def test_rollback_moves_traffic_to_the_revision_before_a_fresh_deploy() -> None:
    policy = make_policy(remediation=[{"rollbackRevision": {"within": "1h"}}])
    fresh = plan(
        policy,
        (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "x"),),
        revisions(timedelta(minutes=20)),
        now=NOW,
    )
    assert isinstance(fresh, Proposal)
    assert fresh.params == {"revision": "api--r1", "from": "api--r2"}
    assert fresh.after == {"traffic": {"api--r1": 100}}
    stale = plan(
        policy,
        (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "x"),),
        revisions(timedelta(hours=3)),
        now=NOW,
    )
    assert isinstance(stale, NoProposal) and "not a fresh deploy" in stale.reason
    single = plan(
        policy,
        (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "x"),),
        ResourceState("app"),
        now=NOW,
    )
    assert isinstance(single, NoProposal) and "single-revision" in single.reason


def test_throughput_steps_back_toward_the_baseline_never_below_floor() -> None:
    ladder = [{"raiseThroughput": {"step": "20%", "maxThroughput": 20000}}]
    policy = cosmos(ladder, stepBack={"baseline": {"throughput": 4000}})
    back = step_back.propose(policy, OK, offer(6000))
    assert isinstance(back, Proposal)
    assert (back.action, back.after) == ("lowerThroughput", {"throughput": 5000})
    last = step_back.propose(policy, OK, offer(4400))
    assert isinstance(last, Proposal) and last.after == {"throughput": 4000}
    assert isinstance(step_back.propose(policy, OK, offer(4000)), NoProposal)
    high_floor = step_back.propose(policy, OK, offer(4800, minimum=4800))
    assert isinstance(high_floor, NoProposal)  # the offer's own minimum is the floor


def test_throughput_step_back_is_held_when_projected_to_breach() -> None:
    ladder = [{"raiseThroughput": {"step": "50%", "maxThroughput": 20000}}]
    policy = cosmos(ladder, stepBack={"baseline": {"throughput": 1000}})
    near = (Verdict("cpu", VerdictState.OK, 55.0, 70.0, "ok", worst=60.0),)
    held = step_back.propose(policy, near, offer(6000))
    assert isinstance(held, NoProposal) and "would be" in held.reason


def test_step_back_needs_a_throughput_baseline_for_cosmos() -> None:
    with pytest.raises(ValueError, match=r"baseline\.throughput"):
        cosmos(
            [{"raiseThroughput": {"maxThroughput": 8000}}],
            stepBack={"baseline": {"minReplicas": 1}},
        )


def test_ids_in_any_case_and_resource_names_like_path_words_parse() -> None:
    """ARM ids are case-insensitive, and a group may be called "containers"."""
    from controller.policy.schema import Target

    rid = (
        "/subscriptions/s/resourceGroups/containers/providers/Microsoft.DocumentDB"
        "/databaseAccounts/acct/sqldatabases/db"
    )
    target = Target(type="cosmosSqlDatabase", resource_id=rid)
    assert target.cosmos_parts == ("acct", "db", None)
    assert target.metrics_scope == "DatabaseName eq 'db'"
    assert target.metrics_id.endswith("/databaseAccounts/acct")


def test_steps_are_rounded_exactly_and_step_back_floors_to_what_the_service_takes() -> None:
    ladder = [{"raiseThroughput": {"step": "10%", "maxThroughput": 20000}}]
    up = plan(cosmos(ladder), BREACH, offer(3000))
    assert isinstance(up, Proposal) and up.after == {"throughput": 3300}  # not 3400
    # an autoscale maximum moves in thousands: a 2,500 baseline means 3,000 at least
    autoscale = cosmos(ladder, stepBack={"baseline": {"throughput": 2500}})
    back = step_back.propose(autoscale, OK, offer(None, 5000))
    assert isinstance(back, Proposal) and back.after == {"maxThroughput": 4000}
    floor = step_back.propose(autoscale, OK, offer(None, 3000))
    assert isinstance(floor, NoProposal) and floor.reason == "at baseline"
    manual = cosmos(ladder, stepBack={"baseline": {"throughput": 450}})
    lowest = step_back.propose(manual, OK, offer(600))
    assert isinstance(lowest, Proposal) and lowest.after == {"throughput": 500}


def test_rollback_skips_a_revision_the_platform_reports_unhealthy() -> None:
    """r1 (a broken canary left active) is unhealthy: traffic goes back to r0 instead."""
    policy = make_policy(remediation=[{"rollbackRevision": {"within": "1h"}}])
    state = ResourceState(
        "app",
        multiple_revisions=True,
        revisions=(
            RevisionInfo("api--r1", NOW - timedelta(days=3), True, 0, healthy=False),
            RevisionInfo("api--r0", NOW - timedelta(days=9), True, 0, healthy=True),
            RevisionInfo("api--r2", NOW - timedelta(minutes=20), True, 100, healthy=True),
        ),
    )
    breach = (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "x"),)
    proposal = plan(policy, breach, state, now=NOW)
    assert isinstance(proposal, Proposal) and proposal.params["revision"] == "api--r0"


def test_rollback_prefers_an_older_revision_still_taking_traffic() -> None:
    """A split deploy: r0 still takes 20 %, r1 is a canary that never took any. r0 has
    served for sure; r1, though newer, may never have."""
    policy = make_policy(remediation=[{"rollbackRevision": {"within": "1h"}}])
    state = ResourceState(
        "app",
        multiple_revisions=True,
        revisions=(
            RevisionInfo("api--r0", NOW - timedelta(days=9), True, 20),
            RevisionInfo("api--r1", NOW - timedelta(days=3), True, 0),
            RevisionInfo("api--r2", NOW - timedelta(minutes=20), True, 80),
        ),
    )
    breach = (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "x"),)
    proposal = plan(policy, breach, state, now=NOW)
    assert isinstance(proposal, Proposal) and proposal.params["revision"] == "api--r0"
    assert proposal.after == {"traffic": {"api--r0": 100}}


BREACH_CPU = (Verdict("cpu", VerdictState.BREACH, 95.0, 70.0, "x"),)
V1, V2 = '{"image": "api:1.4"}', '{"image": "api:1.5"}'


def test_a_revision_a_scale_made_is_neither_rolled_back_from_nor_to() -> None:
    """r2 deployed 1.5 40 minutes ago; r3 is r2 scaled out 5 minutes ago (the same build).
    The deploy is r2 — its window counts — and the rollback goes to r1, the previous
    build: not to r2, which would only undo the scale-out and keep the bad build."""
    policy = make_policy(remediation=[{"rollbackRevision": {"within": "1h"}}])
    state = ResourceState(
        "app",
        multiple_revisions=True,
        revisions=(
            RevisionInfo("api--r1", NOW - timedelta(days=3), True, 0, build=V1),
            RevisionInfo("api--r2", NOW - timedelta(minutes=40), True, 0, build=V2),
            RevisionInfo("api--r3", NOW - timedelta(minutes=5), True, 100, build=V2),
        ),
    )
    proposal = plan(policy, BREACH_CPU, state, now=NOW)
    assert isinstance(proposal, Proposal)
    assert proposal.params == {"revision": "api--r1", "from": "api--r3"}
    # the deploy's age decides the window, not the scale-out's
    later = plan(policy, BREACH_CPU, state, now=NOW + timedelta(minutes=30))
    assert isinstance(later, NoProposal) and "api--r2 has served since" in later.reason
    # nothing but scale-made revisions of one build: no deploy to roll back
    same = ResourceState(
        "app",
        multiple_revisions=True,
        revisions=(
            RevisionInfo("api--r1", NOW - timedelta(minutes=30), True, 0, build=V1),
            RevisionInfo("api--r2", NOW - timedelta(minutes=5), True, 100, build=V1),
        ),
    )
    none = plan(policy, BREACH_CPU, same, now=NOW)
    assert isinstance(none, NoProposal) and "another build" in none.reason


def pinned(**extra: Any) -> ResourceState:
    return ResourceState(
        "app",
        min_replicas=2,
        containers=(ContainerSize("api", 0.5, "1Gi"),),
        multiple_revisions=True,
        traffic_pinned=True,
        revisions=(
            RevisionInfo("api--r1", NOW - timedelta(days=3), True, 100, build=V1),
            RevisionInfo("api--r2", NOW - timedelta(minutes=40), True, 0, build=V2),
        ),
        **extra,
    )


def test_scaling_is_refused_while_traffic_is_pinned_and_a_person_is_told() -> None:
    """After a rollback traffic is pinned to r1: a scale or size change would make a
    revision of the latest template (r2's bad build) taking 0 % — refused, and with
    nothing else on the ladder the breach needs a human."""
    ladder = [{"scaleOut": {"step": 1, "maxReplicas": 6}}, {"scaleUp": {"maxCpu": 2.0}}]
    policy = make_policy(remediation=ladder)
    refused = plan(policy, BREACH_CPU, pinned(), now=NOW)
    assert isinstance(refused, NoProposal) and refused.needs_human
    assert refused.reason.count("traffic is pinned to named revisions (api--r1 100%)") == 2
    # traffic on latestRevision follows the new revision: the scale-out goes ahead
    following = ResourceState("app", min_replicas=2, containers=pinned().containers)
    proposal = plan(policy, BREACH_CPU, following, now=NOW)
    assert isinstance(proposal, Proposal) and proposal.action == "scaleOut"
    back = make_policy(remediation=ladder, stepBack={"baseline": {"minReplicas": 1}})
    held = step_back.propose(back, OK, pinned())
    assert isinstance(held, NoProposal) and "traffic is pinned" in held.reason


def test_a_restart_goes_to_the_revision_that_serves() -> None:
    """Pinned to r1 while r2 is newer: the restart is r1's. In single mode, while a new
    revision is provisioned, the one still serving (the newest ready) is restarted."""
    policy = make_policy(remediation=[{"restartRevision": {}}])
    proposal = plan(policy, BREACH_CPU, pinned(latest_revision="api--r2"), now=NOW)
    assert isinstance(proposal, Proposal) and proposal.params == {"revision": "api--r1"}
    single = ResourceState("app", latest_revision="api--r1", newest_revision="api--r5")
    assert single.provisioning == "api--r5"
    restart = plan(policy, BREACH_CPU, single, now=NOW)
    assert isinstance(restart, Proposal) and restart.params == {"revision": "api--r1"}
