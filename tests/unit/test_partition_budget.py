"""Budgets across a move between live replicas: what the replica that lost partitions
spent beyond its new share goes with them, so the estate's hourly cap holds; and each
partition's slice of a subscription's token bucket moves with the tokens it had, so the
estate's burst and refill hold too."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.audit.log import AuditLog, MemoryAudit, Record
from controller.audit.partitions import PartitionSink, partition_log
from controller.audit.replay import fold, replay, snapshot_line
from controller.audit.snapshot import Retention
from controller.config import BudgetSettings, FailStaticSettings
from controller.fleet import Fleet, HandOver
from controller.fleet_memory import budget_line, count_spent
from controller.memory import target_key
from controller.model import Mode
from controller.shards import partition_of
from tests.conftest import START

CAP = 4
PARTITIONS = 4
SUB = "00000000-0000-0000-0000-0000000000aa"
ALL = range(PARTITIONS)


def replica(owned: range | set[int], cap: float = CAP, burst: float = 100) -> Fleet:
    budgets = BudgetSettings(
        global_per_hour=cap, subscription_burst=burst, subscription_per_hour=burst
    )
    f = Fleet(budgets, FailStaticSettings(), 10)
    f.reshare(owned, PARTITIONS, START)
    return f


def gain(f: Fleet, owned: set[int], logs: dict[int, MemoryAudit], now: datetime) -> int:
    """What a replica does as it gains partitions: replay each one's log, then reshare."""
    counted = sum(count_spent(f, replay(logs[p].records), now, p) for p in sorted(logs))
    f.reshare(owned, PARTITIONS, now)
    return counted


def lose(f: Fleet, owned: set[int], lost: set[int], now: datetime) -> dict[int, MemoryAudit]:
    """… and as it loses them: reshare, then leave a ``budget`` line in each lost log."""
    f.reshare(owned, PARTITIONS, now)
    logs = {p: MemoryAudit() for p in sorted(lost)}
    for p, log in logs.items():
        if handed := f.hand_over(now, p):
            log.append(budget_line(handed, f.global_cap, now, Mode.LIVE))
    return logs


def taken(f: Fleet, now: datetime, limit: int = 100) -> int:
    """How many actions on SUB the replica lets through now, one after the other."""
    n = 0
    while n < limit and f.holds(SUB, now) is None:
        f.spend(SUB, now, f"p|app-{now.isoformat()}-{n}")
        n += 1
    return n


def test_spend_beyond_a_shrunk_share_is_handed_to_the_next_owner(tmp_path: Path) -> None:
    """A owns all 4 partitions and spends the estate's 4 on partition 0; B takes 2 and 3
    from it (A's cap falls to 2). A writes the 2 it spent beyond its new share into
    partition 2's log; B, replaying it, holds: 4 in the hour, not 4 + B's 2."""
    a = replica(ALL)
    for minute in range(CAP):
        a.spend("sub", START + timedelta(minutes=minute), "api|app-0")
    now = START + timedelta(minutes=10)
    a.reshare({0, 1}, PARTITIONS, now)
    handed = a.hand_over(now, 2)
    assert len(handed.spent) == 2 and a.hand_over(now, 3).spent == []  # handed once
    with AuditLog(partition_log(tmp_path, 2)) as log:
        PartitionSink(log, "a").append(budget_line(handed, a.global_cap, now, Mode.LIVE))

    unaware = replica(set())
    unaware.reshare({2, 3}, PARTITIONS, now)
    assert unaware.holds("sub", now) is None  # without A's hand-over B could spend 2 more
    b = replica(set())
    with AuditLog(partition_log(tmp_path, 2)) as log:
        assert count_spent(b, log.memory(), now, 2) == 2
    b.reshare({2, 3}, PARTITIONS, now)
    assert b.holds("sub", now) == (
        "2 actions across all targets in the last hour; the cap is 2 "
        f"(this replica's share of {CAP})"
    )
    assert a.holds("sub", now) is not None  # A keeps counting what it spent
    # an hour on, it all ages out for both
    later = START + timedelta(minutes=CAP + 61)
    assert a.holds("sub", later) is None and b.holds("sub", later) is None


def test_a_spent_burst_is_not_spent_again_by_the_next_owner() -> None:
    """Burst 10, 10 an hour: A owns all 4 partitions and spends the whole burst on
    partition 0's targets; a minute later B takes partitions 2 and 3. Their slices of the
    bucket are empty: A hands over 2.5 tokens short for each, and B, whose bucket for the
    subscription starts at its share of 5, starts at 0 — not at 5 more within the burst.
    Half an hour on, each has refilled its 2.5 (5 an hour each): 10 + 4 in 31 minutes,
    within the estate's 10 + 5."""
    a = replica(ALL, cap=1000, burst=10)
    for n in range(10):
        a.spend(SUB, START, f"p|app-{n}")
    now = START + timedelta(minutes=1)
    logs = lose(a, {0, 1}, {2, 3}, now)
    for log in logs.values():
        (line,) = [r for r in log.records if r["kind"] == "budget"]
        assert line["params"]["spent"] == []  # the hourly cap is far off
        assert line["params"]["owed"] == {SUB: pytest.approx(2.5)}
        assert "1 subscription(s)' bucket short in this partition's slice" in line["reason"]

    unaware = replica(set(), cap=1000, burst=10)
    unaware.reshare({2, 3}, PARTITIONS, now)
    assert taken(unaware, now) == 5  # without the slices' state: the moved share again

    b = replica(set(), cap=1000, burst=10)
    gain(b, {2, 3}, logs, now)
    assert (
        b.holds(SUB, now) == f"subscription {SUB} has spent its action budget (a token every 720s)"
    )
    assert taken(a, now) == 0
    half_hour = now + timedelta(minutes=30)
    assert (taken(a, half_hour), taken(b, half_hour)) == (2, 2)
    estate = 10 + 10 * (half_hour - START) / timedelta(hours=1)  # burst + 31 minutes' refill
    assert estate >= 10 + 4


def test_a_slice_lacks_only_what_the_partitions_kept_could_not_hold() -> None:
    """Burst 10: A (all 4) spent 3 and holds 7; it keeps 2 partitions (room for 5), so
    the 2 others leave with 1 token each — 1.5 short each — and B, gaining both, starts
    at 5 − 3 = 2: tokens are neither made nor lost (A 5 + B 2 = 7). A replica that loses
    every partition hands all it lacks over."""
    a = replica(ALL, cap=1000, burst=10)
    for n in range(3):
        a.spend(SUB, START, f"p|app-{n}")
    logs = lose(a, {0, 1}, {2, 3}, START)
    owed = [log.records[0]["params"]["owed"][SUB] for log in logs.values()]
    assert owed == [pytest.approx(1.5), pytest.approx(1.5)]
    assert a.remaining(SUB, START)[0] == 5
    b = replica(set(), cap=1000, burst=10)
    gain(b, {2, 3}, logs, START)
    assert taken(b, START) == 2  # 5 − 1.5 − 1.5

    a.spend(SUB, START, "p|app-3")  # 4 left, then A loses both of its partitions
    gone = lose(a, set(), {0, 1}, START)
    owed = [log.records[0]["params"]["owed"][SUB] for log in gone.values()]
    assert owed == [pytest.approx(0.5), pytest.approx(0.5)]


def test_a_slice_refills_while_it_moves_and_counts_once_however_often_replayed() -> None:
    """The slice's shortfall is as of its line: by the time the next owner replays it, it
    has refilled at the slice's rate (2.5 an hour), and replaying the same log again (the
    replica reopens the partition) lowers nothing twice."""
    a = replica(ALL, cap=1000, burst=10)
    for n in range(10):
        a.spend(SUB, START, f"p|app-{n}")
    logs = lose(a, {0, 1, 2}, {3}, START)
    assert logs[3].records[0]["params"]["owed"] == {SUB: pytest.approx(2.5)}
    b = replica(set(), cap=1000, burst=10)
    # 24 minutes later: the slice has 1 of its 2.5 back
    later = START + timedelta(minutes=24)
    gain(b, {3}, logs, later)
    assert b.remaining(SUB, later)[0] == 1
    gain(b, {3}, logs, later)  # the same log replayed again, no move: nothing more
    assert taken(b, later) == 1


def test_a_line_without_owed_leaves_buckets_as_before() -> None:
    """A ``budget`` line from before slices were handed over (``params.spent`` only): the
    action it carries costs the next owner a token, and a subscription it does not name
    starts at the next owner's share, as it did."""
    old = MemoryAudit()
    line = budget_line(HandOver([(START, "other", "p|a")]), 2, START, Mode.LIVE)
    params = {"spent": line.params["spent"]}
    old.append(Record.model_validate({**line.model_dump(), "params": params}))
    held = replay(old.records)
    assert held.owed == {} and held.owed_at is None
    b = replica(set(), cap=1000, burst=10)
    gain(b, {2, 3}, {2: old}, START)
    assert b.remaining("other", START)[0] == 0
    assert taken(b, START) == 5


def test_what_a_slice_lacks_survives_a_rotation_while_it_refills() -> None:
    """A rotated-in file starts with a snapshot: the hand-over is in it, within the window;
    the slices' shortfall too, until the slice has surely refilled (burst / refill)."""
    sink = MemoryAudit()
    handed = [(START, "sub", "api|a"), (START + timedelta(minutes=1), "sub", "api|b")]
    at = START + timedelta(minutes=2)
    sink.append(budget_line(HandOver(handed, {"sub": 1.5}), 2, at, Mode.LIVE))
    held = replay(sink.records)
    assert held.carried == [
        [START.isoformat(), "sub", "api|a"],
        [handed[1][0].isoformat(), "sub", "api|b"],
    ]
    assert held.owed == {"sub": 1.5}
    line = snapshot_line(held, (START + timedelta(minutes=3)).isoformat(), "p.jsonl", Retention())
    again = replay([])
    fold(again, line)
    assert again.carried == held.carried
    assert (again.owed, again.owed_at) == (held.owed, held.owed_at)
    late = replay(sink.records)  # an hour on at 10 an hour, a burst of 10 is full again
    line = snapshot_line(late, (at + timedelta(minutes=61)).isoformat(), "p.jsonl", Retention())
    fold(again, line)
    assert (again.owed, again.owed_at) == ({}, None)


BURST, PER_HOUR = 10.0, 10.0
SUBS = [f"00000000-0000-0000-0000-0000000000b{n}" for n in range(3)]


def _apps() -> dict[tuple[str, int], list[str]]:
    """A dozen apps per subscription and partition."""
    apps: dict[tuple[str, int], list[str]] = {(s, p): [] for s in SUBS for p in ALL}
    for sub in SUBS:
        n = 0
        while min(len(apps[sub, p]) for p in ALL) < 12:
            resource = (
                f"/subscriptions/{sub}/resourceGroups/rg/providers/"
                f"Microsoft.App/containerApps/app-{n}"
            )
            apps[sub, partition_of(resource, PARTITIONS)].append(resource)
            n += 1
    return apps


APPS = _apps()


def _intent(resource: str, now: datetime) -> Record:
    """The line an action leaves in its target's partition before it runs."""
    return Record.model_validate(
        {
            "ts": now,
            "kind": "intent",
            "policy": "p",
            "target": resource,
            "verdict": "breach",
            "verdicts": [],
            "action": "scaleOut",
            "params": {},
            "decision": "allow",
            "reason": "",
            "mode": "live",
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": "r",
        }
    )


def _moves(
    seed: int, crashes: list[tuple[datetime, float]] | None = None
) -> dict[str, list[datetime]]:
    """Three replicas, four partitions, three subscriptions. At each step time passes, a
    partition moves between live replicas (or, with ``crashes``, a replica dies: its
    partitions go with no hand-over and it comes back owning nothing), then each replica
    acts on one subscription, on the targets of one of its partitions, for as long as its
    budgets let it (so a move often takes a slice whose log holds none of the actions
    that emptied it, to a replica that has not used that subscription). The times of
    every action, by subscription; each crash's time and the dead replica's share of the
    burst go to ``crashes``."""
    rng = random.Random(seed)
    budgets = BudgetSettings(
        global_per_hour=10_000, subscription_burst=BURST, subscription_per_hour=PER_HOUR
    )
    logs = {p: MemoryAudit() for p in ALL}
    owned = {"a": {0, 1}, "b": {2}, "c": {3}}
    fleets = {name: Fleet(budgets, FailStaticSettings(), 12) for name in owned}
    for name, f in fleets.items():
        f.reshare(owned[name], PARTITIONS, START)
    now, actions = START, {sub: list[datetime]() for sub in SUBS}

    def take_over(name: str, partitions: set[int]) -> None:
        f = fleets[name]
        for p in sorted(partitions):
            count_spent(f, replay(logs[p].records), now, p)
        owned[name] |= partitions
        f.reshare(owned[name], PARTITIONS, now)

    for _ in range(40):
        now += timedelta(seconds=rng.choice((0, 0, 20, 90, 360, 900)))
        if crashes is not None and rng.random() < 0.2:
            dead = rng.choice(sorted(owned))
            left, owned[dead] = owned[dead], set()
            crashes.append((now, BURST * len(left) / PARTITIONS))
            fleets[dead] = Fleet(budgets, FailStaticSettings(), 12)
            fleets[dead].reshare(set(), PARTITIONS, now)
            for p in left:
                take_over(rng.choice([n for n in owned if n != dead]), {p})
        elif rng.random() < 0.8:
            frm = rng.choice([n for n in owned if owned[n]])
            p = rng.choice(sorted(owned[frm]))
            to = rng.choice([n for n in owned if n != frm])
            owned[frm].discard(p)
            fleets[frm].reshare(owned[frm], PARTITIONS, now)
            if handed := fleets[frm].hand_over(now, p):
                logs[p].append(budget_line(handed, fleets[frm].global_cap, now, Mode.LIVE))
            take_over(to, {p})
        for name in rng.sample(sorted(owned), 3):
            if not owned[name] or rng.random() < 0.3:
                continue
            f, sub = fleets[name], rng.choice(SUBS)
            idle = list(APPS[sub, rng.choice(sorted(owned[name]))])  # each acts once a moment
            while idle and f.holds(sub, now) is None:
                resource = idle.pop()
                logs[partition_of(resource, PARTITIONS)].append(_intent(resource, now))
                f.spend(sub, now, target_key("p", resource))
                actions[sub].append(now)
    return actions


def _worst_window(actions: list[datetime], crashes: Sequence[tuple[datetime, float]] = ()) -> float:
    """How far the actions go past the estate's bucket: the most, over every window of
    them, of actions − (burst + refill over the window + the shares of the burst of the
    replicas that died by its end); ≤ 0 when they fit."""
    worst = 0.0
    for i, first in enumerate(actions):
        for j in range(i, len(actions)):
            hours = (actions[j] - first) / timedelta(hours=1)
            lost = sum(share for at, share in crashes if at <= actions[j])
            worst = max(worst, (j - i + 1) - (BURST + PER_HOUR * hours + lost))
    return worst


@pytest.mark.parametrize("seed", range(40))
def test_over_moves_the_replicas_together_stay_within_the_estate_bucket(seed: int) -> None:
    """Over random moves between live replicas, acting as much as they may: in no window
    do the three take more of a subscription's tokens than its burst + refill allow.
    (Without the slices' hand-over, 6 of these 40 sequences go past it, by up to 2.9.)"""
    actions = _moves(seed)
    assert sum(map(len, actions.values())) > 10
    assert max(_worst_window(times) for times in actions.values()) <= 1e-6


@pytest.mark.parametrize("seed", [5, 25, 43, 104, *range(8)])
def test_a_crash_frees_at_most_the_dead_replicas_share_of_the_burst(seed: int) -> None:
    """A replica that dies writes no line: what its buckets lacked beyond the actions its
    partitions' logs hold (tokens spent on targets of partitions it had already handed
    on) dies with it. Over moves and crashes, a subscription's actions stay within burst
    + refill + each dead replica's share of the burst; the seeds named go past burst +
    refill alone (by up to 4.9), which is what a crash allows."""
    crashes: list[tuple[datetime, float]] = []
    actions = _moves(seed, crashes)
    assert max(_worst_window(times, crashes) for times in actions.values()) <= 1e-6


def _spend_on(f: Fleet, sub: str, partition: int, n: int, now: datetime) -> MemoryAudit:
    """``n`` actions on apps of ``partition`` (in ``sub``), spent live, each an intent in
    the partition's log."""
    log = MemoryAudit()
    for resource in APPS[sub, partition][:n]:
        f.spend(sub, now, target_key("p", resource))
        log.append(_intent(resource, now))
    return log


def test_a_bucket_only_replay_spent_from_starts_at_the_share_less_what_the_slices_lack() -> None:
    """Burst 10, 10 an hour. A owns all 4 partitions and spends 6 on partition 2's apps
    (4 left), then loses 2 and 3: it keeps its 4 tokens (room for 5), so both slices
    leave empty. B owns nothing and never acted on the subscription: its bucket comes
    only from replaying partition 2's six actions, which are already what the empty
    slices lack — counted again, B would start 6 below empty and wait 84 minutes for a
    token; it starts at 0 of its 5 and has one 12 minutes on (5 an hour), as the estate
    does: 10 − 6 spent, A's 4, refilled at 10 an hour."""
    sub = SUBS[0]
    a = replica(ALL, cap=1000, burst=10)
    logs = {2: _spend_on(a, sub, 2, 6, START), 3: MemoryAudit()}
    now = START + timedelta(minutes=1)
    for p, log in lose(a, {0, 1}, {2, 3}, START).items():
        logs[p].records.extend(log.records)
    b = replica(set(), cap=1000, burst=10)
    assert gain(b, {2, 3}, logs, now) == 6  # the hour's cap counts them all
    assert b.remaining(sub, now)[0] == 0
    assert taken_on(b, sub, now) == 0
    assert taken_on(b, sub, now + timedelta(minutes=12)) == 1
    assert taken_on(a, sub, now) == 4


def test_a_slice_a_dead_owner_left_without_a_line_lacks_a_token_per_action_since() -> None:
    """A crash writes no line: a partition's log then says what its slice lacks by its
    actions since its last line (a token each, down to empty, refilled since at the
    slice's rate). A owns all 4 and spends 2 on partition 3's apps, then dies; B, which
    never acted on the subscription, gains partition 3: its slice lacks the 2 (0.5 of
    2.5 left), and has a token 12 minutes on (2.5 an hour)."""
    sub = SUBS[1]
    a = replica(ALL, cap=1000, burst=10)
    logs = {3: _spend_on(a, sub, 3, 2, START)}
    b = replica(set(), cap=1000, burst=10)
    gain(b, {3}, logs, START)
    assert b.remaining(sub, START)[0] == 0
    assert taken_on(b, sub, START + timedelta(minutes=11)) == 0
    assert taken_on(b, sub, START + timedelta(minutes=13)) == 1


def taken_on(f: Fleet, sub: str, now: datetime, limit: int = 100) -> int:
    """How many actions on ``sub`` the replica lets through now, one after the other."""
    n = 0
    while n < limit and f.holds(sub, now) is None:
        f.spend(sub, now, f"p|{sub}-{now.isoformat()}-{n}")
        n += 1
    return n


def test_a_replica_that_leaves_deals_its_hour_out_across_its_partitions_once() -> None:
    """An orderly stop: A owns partitions 0 and 1 of 4 (a cap of 2 of the estate's 4) and
    spent both on partition 0's apps. Leaving, it gives up both: each partition's line
    carries one of the two (newest first, in turn), so whoever takes partition 1 — whose
    log holds none of them — counts one too, and each slice says what it lacks. One
    replica taking both counts each action once."""
    sub = SUBS[2]
    a = replica({0, 1}, cap=4, burst=10)
    log0 = _spend_on(a, sub, 0, 2, START)
    now = START + timedelta(minutes=1)
    handed = a.leave(now, [1, 0])
    assert sorted(handed) == [0, 1]
    assert [len(handed[p].spent) for p in (0, 1)] == [1, 1]
    both = sorted(e for h in handed.values() for e in h.spent)
    assert both == sorted((START, sub, target_key("p", r)) for r in APPS[sub, 0][:2])
    assert a.share == 0 and a.leave(now, [0, 1]) == {0: HandOver(), 1: HandOver()}
    # its bucket held 5 − 2 = 3 and a minute's refill: each slice leaves with half
    assert [h.owed[sub] for h in handed.values()] == [pytest.approx(2.5 - (3 + 5 / 60) / 2)] * 2
    logs = {0: log0, 1: MemoryAudit()}
    for p, h in handed.items():
        logs[p].append(budget_line(h, a.global_cap, now, Mode.LIVE))

    c = replica({2}, cap=4, burst=10)  # takes partition 1 only: a cap of 2, 1 counted
    gain(c, {1, 2}, {1: logs[1]}, now)
    assert c.remaining(sub, now)[1] == 1
    b = replica(set(), cap=4, burst=10)  # takes both: each action once, 2 of its cap of 2
    assert gain(b, {0, 1}, logs, now) == 4
    assert b.remaining(sub, now)[1] == 0
