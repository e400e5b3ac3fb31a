"""What the fleet remembers, to and from audit lines: the fail-static release line, the
``budget`` line a replica leaves in a partition it lost, and the budgets (and fail
static) a replay rebuilds — at start from the replica's log, and from each partition's
log as it is gained."""

from __future__ import annotations

from datetime import datetime

from controller.audit.log import Record
from controller.audit.replay import FAIL_STATIC_CLEARED, Replayed
from controller.fleet import Fleet, HandOver
from controller.model import Mode, VerdictState


def release_line(
    why: str, policy: str, target: str, state: VerdictState, now: datetime, mode: Mode
) -> Record:
    """The audit line that ends a fail-static episode: a restart reads from it that the
    episode (escalated once) is over. It carries no verdicts: it is the fleet's."""
    return Record.model_validate(
        {
            "ts": now,
            "kind": "resolved",
            "policy": policy,
            "target": target,
            "verdict": state.value,
            "verdicts": [],
            "action": None,
            "params": {},
            "decision": None,
            "reason": f"{FAIL_STATIC_CLEARED} ({why}): targets act again",
            "mode": mode.value,
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": "fleet",
        }
    )


def budget_line(handed: HandOver, cap: int, now: datetime, mode: Mode) -> Record:
    """The ``budget`` line a replica leaves in a partition it lost: the actions of the
    hour it spent beyond its new share, and the tokens the partition's slice of each
    subscription's bucket lacks, for the next owner to count."""
    spent = [[ts.isoformat(), sub, key] for ts, sub, key in sorted(handed.spent)]
    short = f"; {len(handed.owed)} subscription(s)' bucket short in this partition's slice"
    return Record.model_validate(
        {
            "ts": now,
            "kind": "budget",
            "policy": "",
            "target": "",
            "verdict": "",
            "verdicts": [],
            "action": None,
            "params": {"spent": spent, "owed": dict(handed.owed)},
            "decision": None,
            "reason": (
                f"budget carried: {len(spent)} action(s) of the last hour beyond this "
                f"replica's new share (its cap is now {cap})" + (short if handed.owed else "")
            ),
            "mode": mode.value,
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": "fleet",
        }
    )


def rebuild_fleet(fleet: Fleet, replayed: Replayed) -> None:
    """What the fleet remembers comes from the log too: budgets (every remembered action
    spent again, in time order, on its target's subscription) and fail static (its
    escalation is sent once)."""
    spent = sorted(
        (record.ts, _subscription(replayed.targets.get(key, "")))
        for key, memory in replayed.memories.items()
        for record in memory.history
    )
    for ts, subscription in spent:
        fleet.spend(subscription, ts)
    fleet.engaged = replayed.fail_static


def count_spent(fleet: Fleet, replayed: Replayed, now: datetime, partition: int) -> int:
    """A partition gained: every action its log remembers that still costs something (an
    action the previous owner ran, or left without a result) counts against this
    replica's budgets, once (replayed: a bucket only they spent from is not this
    replica's own), and its slice of each bucket comes as its last ``budget`` line left
    it, less a token for each of its actions since. Its fail static is not the
    partition's: it stays out."""
    since = now - fleet.memory_span
    spent = sorted(
        (record.ts, key)
        for key, memory in replayed.memories.items()
        for record in memory.history
        if record.ts >= since
    )
    spent += sorted(
        (_time(intent.get("ts")), key)
        for key, intents in replayed.open_intents.items()
        for intent in intents
        if _time(intent.get("ts")) >= since
    )
    actions = [(ts, _subscription(replayed.targets.get(key, ""))) for ts, key in spent]
    for (ts, subscription), (_, key) in zip(actions, spent, strict=True):
        fleet.spend(subscription, ts, key, replayed=True)
    # handed over by a replica that lost the partition: counted once, as the action it is
    carried = [(_time(c[0]), c[1], c[2]) for c in replayed.carried if _time(c[0]) >= since]
    for ts, subscription, key in sorted(carried):
        fleet.spend(subscription, ts, key, replayed=True)
    at = _time(replayed.owed_at) if replayed.owed_at is not None else None
    fleet.arrive(partition, at, replayed.owed, actions)
    return len(spent) + len(carried)


def _time(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _subscription(resource_id: str) -> str:
    parts = resource_id.split("/")
    return parts[2] if len(parts) > 2 else ""
