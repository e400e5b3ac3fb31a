"""Blast radius: shared budgets and fail static, across every target of a controller."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import BudgetSettings, FailStaticSettings
from controller.core import guards
from controller.fleet import Fleet, least_partitions
from controller.model import ActionRecord, Mode, OutcomeKind, Proposal, VerdictState
from controller.shards import partition_of
from tests.conftest import START, make_policy

B, OK = VerdictState.BREACH, VerdictState.OK


def fleet(targets: int = 8, **budgets: float) -> Fleet:
    return Fleet(BudgetSettings.model_validate(budgets), FailStaticSettings(), targets)


def test_fail_static_engages_when_many_break_at_once_and_resumes_after_two_rounds() -> None:
    """4 of 8 in breach (over 3, and 45 % or more): everyone holds; two healthy rounds clear it."""
    f = fleet()
    alarms = [f.note(f"app{i}", B if i < 4 else OK, False, START) for i in range(8)]
    assert [a for a in alarms if a] == [
        "fail static: 4 of 8 targets in breach at once; no target acts until this clears"
    ]
    assert f.holds("sub", START) == "fail static: 4 of 8 targets in breach at once"
    for i in range(8):
        f.note(f"app{i}", OK, False, START)
    assert f.holds("sub", START) is not None  # one healthy round is not enough
    for i in range(8):
        f.note(f"app{i}", OK, False, START)
    assert f.holds("sub", START) is None


def test_three_breaching_targets_are_not_a_correlated_failure() -> None:
    """Three of four breaching is over 45 % but not over three targets: each acts alone."""
    f = fleet(targets=4)
    for i in range(4):
        f.note(f"app{i}", B if i < 3 else OK, False, START)
    assert f.holds("sub", START) is None


def test_a_failing_signal_backend_holds_everyone() -> None:
    """Metrics failing for most targets: hold, even though nothing is known to be in breach."""
    f = fleet(targets=6)
    for i in range(6):
        f.note(f"app{i}", VerdictState.UNKNOWN, i < 4, START)
    assert "signals failing for 4 of 6 targets" in (f.holds("sub", START) or "")


def test_subscription_bucket_and_global_cap() -> None:
    """A burst of 2 then one an hour per subscription; 3 an hour across everything."""
    f = fleet(subscriptionBurst=2, subscriptionPerHour=1, globalPerHour=3)
    f.spend("sub-a", START)
    f.spend("sub-a", START)
    assert "spent its action budget" in (f.holds("sub-a", START) or "")
    assert f.holds("sub-b", START) is None
    assert f.holds("sub-a", START + timedelta(minutes=61)) is None  # a token came back
    f.spend("sub-b", START)
    assert "the cap is 3" in (f.holds("sub-c", START + timedelta(minutes=30)) or "")


_RG = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
CACHE_ID = f"{_RG}/Microsoft.Cache/redis/redis-agentstudio-prod"
DB_ID = f"{_RG}/Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/db"


def test_restart_budget_per_target() -> None:
    """Restarts: at most one in 15 minutes and three a day, by default."""
    policy = make_policy(
        remediation=[{"restartRevision": {}}],
        guards={"cooldown": "1m", "maxActionsPerHour": 60},
    )
    restart = Proposal("restartRevision", 0, {"revision": "r1"}, {}, {}, "x")

    def history(*minutes_ago: float) -> list[ActionRecord]:
        now = START + timedelta(days=2)
        return [
            ActionRecord(now - timedelta(minutes=m), "restartRevision", OutcomeKind.SUCCEEDED)
            for m in minutes_ago
        ]

    now = START + timedelta(days=2)
    assert guards.check(policy, restart, history(10), now, Mode.LIVE).reason.startswith(
        "budget: 1 restartRevision in the last 15m"
    )
    assert guards.check(policy, restart, history(20), now, Mode.LIVE).guard is None
    three = guards.check(policy, restart, history(20, 300, 600), now, Mode.LIVE)
    assert three.reason.startswith("budget: 3 restartRevision in the last 1d")


def test_a_breach_waits_for_one_full_round_before_acting() -> None:
    """The first target to see a breach waits until every other one has looked too."""
    f = fleet(targets=3)
    for i in range(3):
        f.note(f"app{i}", OK, False, START)
    later = START + timedelta(seconds=30)
    f.note("app0", B, False, later)
    assert "waiting for 2 more target(s)" in (f.holds("sub", later, "app0") or "")
    f.note("app1", OK, False, later + timedelta(seconds=5))
    f.note("app2", OK, False, later + timedelta(seconds=9))
    f.note("app0", B, False, later + timedelta(seconds=30))
    assert f.holds("sub", later + timedelta(seconds=30), "app0") is None


def test_cache_reboots_and_throughput_cuts_have_strict_default_budgets() -> None:
    """A cache reboot at most once a day; throughput lowered at most once an hour."""
    now = START + timedelta(days=2)
    cases = [
        (
            {"type": "redisCache", "resourceId": CACHE_ID},
            [{"rebootCache": {}}],
            Proposal("rebootCache", 0, {"rebootType": "AllNodes"}, {}, {}, "x"),
            timedelta(hours=20),
            "budget: 1 rebootCache in the last 1d",
        ),
        (
            {"type": "cosmosSqlDatabase", "resourceId": DB_ID},
            [{"raiseThroughput": {"maxThroughput": 8000}}],
            Proposal("lowerThroughput", -1, {"throughput": 4000}, {}, {}, "x"),
            timedelta(minutes=50),
            "budget: 1 lowerThroughput in the last 1h",
        ),
    ]
    for target, ladder, proposal, since, reason in cases:
        policy = make_policy(
            target=target, remediation=ladder, guards={"cooldown": "1m", "maxActionsPerHour": 60}
        )
        ran = [ActionRecord(now - since, proposal.action, OutcomeKind.SUCCEEDED)]
        assert guards.check(policy, proposal, ran, now, Mode.LIVE).reason.startswith(reason)
        later = [ActionRecord(now - since * 1.3, proposal.action, OutcomeKind.SUCCEEDED)]
        assert guards.check(policy, proposal, later, now, Mode.LIVE).guard is None


def test_the_hourly_cap_counts_for_a_pass_that_began_before_the_last_action() -> None:
    """Actions are kept only as long as they can count, and a pass that began a few
    seconds before another's action still counts the one an hour before that."""
    f = fleet(globalPerHour=2, subscriptionBurst=100)
    f.spend("sub", START + timedelta(seconds=10))
    f.spend("sub", START + timedelta(hours=1, seconds=10))
    held = f.holds("sub", START + timedelta(hours=1, seconds=5))
    assert held is not None and "cap is 2" in held
    assert f.holds("sub", START + timedelta(hours=1, seconds=15)) is None
    for hour in range(2, 50):
        f.spend("sub", START + timedelta(hours=hour))
    assert len(f._actions) <= 3  # a day and more of actions: only the last two hours kept


def test_fail_static_tells_its_end_before_letting_go() -> None:
    """The end of an episode is told (for the audit line) before acting resumes; if it
    cannot be told, fail static still holds."""
    told: list[tuple[str, str]] = []

    def audit_down(why: str, target: str, state: VerdictState, at: object) -> None:
        raise RuntimeError("disk full")

    f = Fleet(BudgetSettings(), FailStaticSettings(), 8, on_release=audit_down)
    for i in range(8):
        f.note(f"app{i}", B if i < 4 else OK, False, START)
    with pytest.raises(RuntimeError):
        for _ in range(2):
            for i in range(8):
                f.note(f"app{i}", OK, False, START)
    assert f.holds("sub", START) is not None
    f._on_release = lambda why, target, state, at: told.append((why, target))
    f.note("app0", OK, False, START)
    assert f.holds("sub", START) is None
    assert told == [("4 of 8 targets in breach at once", "app0")]


def _scan_behind(f: Fleet, target: str) -> int | None:
    """The count as a scan of every target's last report would give it."""
    since = f._breach_since.get(target)
    if since is None:
        return None
    return f._targets - sum(1 for t in f._noted.values() if t >= since)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 7),  # which target
            st.sampled_from(["ok", "breach", "forget"]),
            st.integers(-3, 20),  # seconds since the last step: passes overlap a little
        ),
        max_size=80,
    )
)
def test_who_reported_since_a_breach_is_counted_as_a_scan_would(
    steps: list[tuple[int, str, int]],
) -> None:
    """The sorted index of last reports gives the same wait as scanning every target,
    over any order of reports, out-of-order times and targets forgotten."""
    f = fleet(targets=8)
    now = START
    for i, what, step in steps:
        now += timedelta(seconds=step)
        if what == "forget":
            f.forget(f"app{i}")
        else:
            f.note(f"app{i}", B if what == "breach" else OK, False, now)
        assert sorted(f._noted.values()) == f._reports
        for t in range(8):
            expected = _scan_behind(f, f"app{t}")
            held = f.holds("sub", now, f"app{t}")
            if f.engaged is None and expected is not None and expected > 0:
                assert held is not None and f"waiting for {expected} more" in held
            elif f.engaged is None and held is not None:
                assert "waiting" not in held


def test_a_target_that_is_gone_counts_toward_no_share_and_no_wait() -> None:
    """Four breaching targets of eight are fail static; when two of them are gone (a
    reload, a discovery that no longer finds them), the rest neither count them nor wait."""
    f = fleet(targets=8)
    for i in range(4):
        f.note(f"app{i}", B, False, START)
    assert f.engaged is not None
    f.keep([f"app{i}" for i in range(2, 8)])
    assert f._breaching == 2 and "app0" not in f._noted and len(f._reports) == 2
    later = START + timedelta(seconds=30)
    for i in range(2, 8):
        for _ in range(3):  # rounds of the six that remain
            f.note(f"app{i}", OK if i > 2 else B, False, later)
    assert f.engaged is None
    assert f.holds("sub", later, "app2") is None  # app0 and app1 are not waited for


def _spend_until_held(f: Fleet, subscription: str, every: timedelta, limit: int = 1000) -> int:
    """How many actions the fleet lets through, one every ``every``, before it holds."""
    now = START
    for n in range(limit):
        if f.holds(subscription, now) is not None:
            return n
        f.spend(subscription, now)
        now += every
    return limit


def test_shards_split_the_estate_budgets_so_replicas_together_stay_within_them() -> None:
    """Three replicas owning 11, 11 and 10 of 32 partitions: each gets its share of the
    hourly cap (rounded down) and of each subscription's bucket; together never more
    than the estate's 30 an hour or burst of 10."""
    caps, bursts = [], []
    for owned in (11, 11, 10):
        f = fleet(globalPerHour=30, subscriptionBurst=1000, subscriptionPerHour=1000)
        f.reshare(range(owned), 32, START)
        caps.append(_spend_until_held(f, "sub", timedelta(seconds=1)))
        g = fleet(globalPerHour=1000, subscriptionBurst=10, subscriptionPerHour=0.001)
        g.reshare(range(owned), 32, START)
        bursts.append(_spend_until_held(g, "sub", timedelta(seconds=1)))
    assert caps == [10, 10, 9] and sum(caps) <= 30
    assert bursts == [3, 3, 3] and sum(bursts) <= 10


def test_a_replica_that_owns_no_partition_may_not_act() -> None:
    f = fleet()
    f.reshare((), 32, START)
    assert f.holds("sub", START) is not None
    f.reshare(range(32), 32, START)
    assert f.holds("sub", START) is None


def test_a_cause_shared_by_the_estate_holds_every_replica_and_a_local_one_only_its_own() -> None:
    """Fail static with shards: each replica judges its own targets, which the partition
    hash makes a uniform sample of the estate. 600 of 1,000 apps in breach at once (every
    app of three regions of five): each of three replicas (11/11/10 of 32 partitions)
    sees well over 45 % of its own in breach and holds. One partition's apps all in
    breach is not a shared cause: no replica holds."""
    apps = [f"/subscriptions/s/resourceGroups/rg-{i % 5}/providers/x/app-{i}" for i in range(1000)]
    owners = [range(0, 11), range(11, 22), range(22, 32)]

    def engaged(breaching: set[str]) -> list[bool]:
        held = []
        for owned in owners:
            mine = [a for a in apps if partition_of(a, 32) in owned]
            f = fleet(targets=len(mine))
            for app in mine:
                f.note(app, B if app in breaching else OK, False, START)
            held.append(f.engaged is not None)
        return held

    assert engaged({a for a in apps if a.split("/")[4] in ("rg-0", "rg-1", "rg-2")}) == [
        True,
        True,
        True,
    ]
    assert engaged({a for a in apps if partition_of(a, 32) == 5}) == [False, False, False]


def test_a_share_too_small_for_one_action_is_named_with_how_many_replicas_can_act() -> None:
    """Budgets are shared in whole actions: 3 of 32 partitions of a burst of 10 is a bucket
    of 0.94 tokens, which never lets a target act. The replica says so (for /readyz), and
    how many replicas the budgets allow; 4 of 32 (1.25 tokens) acts."""
    f = fleet()
    assert f.starved() is None  # no shards
    f.reshare(range(3), 32, START)
    assert f.holds("sub", START) is not None  # it truly cannot act
    why = f.starved()
    assert why is not None and "needs 4 partitions" in why and "at most 8 replicas" in why
    f.reshare(range(4), 32, START)
    assert f.starved() is None and f.holds("sub", START) is None
    f.reshare((), 32, START)
    assert f.starved() is None  # owning nothing is waiting, not starving


def test_the_hourly_cap_share_counts_too() -> None:
    f = fleet(subscriptionBurst=100, globalPerHour=10)
    f.reshare(range(3), 32, START)  # cap floor(10 × 3/32) = 0
    assert f.global_cap == 0 and f.holds("sub", START) is not None
    assert "needs 4 partitions" in (f.starved() or "")
    assert least_partitions(BudgetSettings(subscription_burst=10, global_per_hour=30), 30) == 3
