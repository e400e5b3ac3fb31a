"""Budgets across a move between live replicas: what the replica that lost partitions
spent beyond its new share goes with them, so the estate's hourly cap holds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from controller.audit.log import AuditLog, MemoryAudit
from controller.audit.partitions import PartitionSink, partition_log
from controller.audit.replay import fold, replay, snapshot_line
from controller.audit.snapshot import Retention
from controller.config import BudgetSettings, FailStaticSettings
from controller.fleet import Fleet
from controller.model import Mode
from controller.runtime import budget_line, count_spent
from tests.conftest import START

CAP = 4


def replica(owned: int) -> Fleet:
    budgets = BudgetSettings(global_per_hour=CAP, subscription_burst=100)
    f = Fleet(budgets, FailStaticSettings(), 10)
    f.reshare(owned, 4)
    return f


def test_spend_beyond_a_shrunk_share_is_handed_to_the_next_owner(tmp_path: Path) -> None:
    """A owns all 4 partitions and spends the estate's 4 on partition 0; B takes 2 and 3
    from it (A's cap falls to 2). A writes the 2 it spent beyond its new share into
    partition 2's log; B, replaying it, holds: 4 in the hour, not 4 + B's 2."""
    a = replica(4)
    for minute in range(CAP):
        a.spend("sub", START + timedelta(minutes=minute), "api|app-0")
    now = START + timedelta(minutes=10)
    a.reshare(2, 4)
    handed = a.hand_over(now)
    assert len(handed) == 2 and a.hand_over(now) == []  # handed once, not again
    with AuditLog(partition_log(tmp_path, 2)) as log:
        PartitionSink(log, "a").append(budget_line(handed, a.global_cap, now, Mode.LIVE))

    b = replica(0)
    b.reshare(2, 4)
    assert b.holds("sub", now) is None  # without A's hand-over B could spend 2 more
    with AuditLog(partition_log(tmp_path, 2)) as log:
        assert count_spent(b, log.memory(), now) == 2
    assert b.holds("sub", now) == (
        "2 actions across all targets in the last hour; the cap is 2 "
        f"(this replica's share of {CAP})"
    )
    assert a.holds("sub", now) is not None  # A keeps counting what it spent
    # an hour on, it all ages out for both
    later = START + timedelta(minutes=CAP + 61)
    assert a.holds("sub", later) is None and b.holds("sub", later) is None


def test_spend_handed_over_survives_a_rotation() -> None:
    """A rotated-in file starts with a snapshot: the hand-over is in it, within the window."""
    sink = MemoryAudit()
    handed = [(START, "sub", "api|a"), (START + timedelta(minutes=1), "sub", "api|b")]
    sink.append(budget_line(handed, 2, START + timedelta(minutes=2), Mode.LIVE))
    held = replay(sink.records)
    assert held.carried == [
        [START.isoformat(), "sub", "api|a"],
        [handed[1][0].isoformat(), "sub", "api|b"],
    ]
    line = snapshot_line(held, (START + timedelta(minutes=3)).isoformat(), "p.jsonl", Retention())
    again = replay([])
    fold(again, line)
    assert again.carried == held.carried
