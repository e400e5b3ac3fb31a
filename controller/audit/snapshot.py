"""The memory as one audit line: what a rotated-in file starts with.

A snapshot holds exactly what replaying every line before it rebuilds — each policy's
:class:`~controller.memory.TargetMemory`, the intents still without a result, whether
fail static holds — so replaying the snapshot and the lines after it gives the same
memory as replaying the whole history.

Only the action history is trimmed, to what anything could still count
(:func:`prune`): every action inside ``keep`` (the longest window a guard or budget
counts), each action's last run whatever its age (cooldowns and step-back count from
the last action), and for each subscription the actions since its token bucket was
last full (the bucket's level depends on nothing older). A partition's last ``budget``
line's shortfall (what its slice of each bucket lacked) is kept while the slice could
still be short: a burst's worth of refill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.audit.chain import SNAPSHOT
from controller.core.budget import HOUR
from controller.memory import (
    ApprovalRequest,
    PendingVerification,
    TargetMemory,
    breaker_from_json,
    breaker_json,
)
from controller.model import ActionRecord, OutcomeKind, VerdictState

# the fleet's hourly cap counts actions up to two hours back (a pass that began earlier)
FLEET_WINDOW = 2 * HOUR


# a snapshot is no target's line, but it carries every field a record has, so readers
# that index them (`audit show`, reports, jq) keep working
_NO_TARGET: dict[str, Any] = {
    "policy": None,
    "target": None,
    "verdict": None,
    "verdicts": [],
    "action": None,
    "params": {},
    "decision": None,
    "guard": None,
    "mode": None,
    "outcome": None,
    "before": {},
    "after": {},
    "reconcile_id": None,
}


@dataclass(frozen=True)
class Retention:
    """How much action history a snapshot keeps: see :func:`prune`."""

    keep: timedelta = timedelta(days=7)
    bucket_burst: float = 10  # the subscription token bucket (budgets.subscriptionBurst)
    bucket_per_hour: float = 10  # … and its refill (budgets.subscriptionPerHour)


@dataclass
class Contents:
    """What a snapshot line holds."""

    memories: dict[str, TargetMemory]
    open_intents: dict[str, list[dict[str, Any]]]
    fail_static: str | None
    targets: dict[str, str]  # policy → resource ID (its subscription owns the bucket)
    # spend handed over with the partition (``budget`` lines): [ts, subscription, target]
    carried: list[list[str]] = field(default_factory=list)
    # what the partition's slice of each subscription's bucket lacked, and when
    owed: dict[str, float] = field(default_factory=dict)
    owed_at: str | None = None


def owed_of(value: Mapping[str, Any]) -> dict[str, float]:
    """A ``budget`` line's (or snapshot's) ``owed``: tokens by subscription (the line is
    the chain's: only numbers were written)."""
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def line(contents: Contents, ts: str, rotated_from: str, retention: Retention) -> dict[str, Any]:
    """The snapshot line's fields (not yet sealed), its history pruned as of ``ts``."""
    prune(contents, _time(ts), retention)
    return {
        **_NO_TARGET,
        "ts": ts,
        "kind": SNAPSHOT,
        "reason": f"the memory at the end of {rotated_from}",
        "rotated_from": rotated_from,
        "memories": {name: memory_json(m) for name, m in sorted(contents.memories.items())},
        "open_intents": contents.open_intents,
        "fail_static": contents.fail_static,
        "targets": contents.targets,
        "carried": contents.carried,
        "owed": {"at": contents.owed_at, "tokens": contents.owed} if contents.owed_at else None,
    }


def read(record: Mapping[str, Any]) -> Contents:
    """A snapshot line read back."""
    return Contents(
        {str(k): memory_from_json(v) for k, v in (record.get("memories") or {}).items()},
        {str(k): list(v) for k, v in (record.get("open_intents") or {}).items()},
        record.get("fail_static"),
        {str(k): str(v) for k, v in (record.get("targets") or {}).items()},
        [[str(ts), str(sub), str(key)] for ts, sub, key in record.get("carried") or []],
        *_owed_read(record.get("owed")),
    )


def _owed_read(held: Any) -> tuple[dict[str, float], str | None]:
    if not isinstance(held, dict) or not held.get("at"):
        return {}, None
    return owed_of(held.get("tokens") or {}), str(held["at"])


def prune(contents: Contents, at: datetime, retention: Retention) -> None:
    """Drop, in place, the actions nothing counts any more at ``at`` (see the module)."""
    keep_from = at - max(retention.keep, FLEET_WINDOW)
    contents.carried[:] = [c for c in contents.carried if _time(c[0]) >= at - FLEET_WINDOW]
    # a slice short of tokens is full again within a bucket's burst over its refill
    full = timedelta(hours=retention.bucket_burst / retention.bucket_per_hour)
    if contents.owed_at is not None and _time(contents.owed_at) < at - full:
        contents.owed, contents.owed_at = {}, None
    since_full = _since_bucket_full(contents, retention)
    for name, memory in contents.memories.items():
        last = {r.action: r for r in memory.history}  # each action's last run
        lasts = {id(r) for r in last.values()}
        cut = since_full.get(_subscription(contents.targets.get(name)))
        memory.history = [
            r
            for r in memory.history
            if r.ts >= keep_from or id(r) in lasts or (cut is not None and r.ts >= cut)
        ]


def _since_bucket_full(contents: Contents, retention: Retention) -> dict[str, datetime]:
    """Per subscription, the last spend that found its token bucket full (the level after
    it is ``burst - 1`` whatever came before), as the fleet replays spends: in time order."""
    spends: dict[str, list[datetime]] = {}
    for name, memory in contents.memories.items():
        subscription = _subscription(contents.targets.get(name))
        spends.setdefault(subscription, []).extend(r.ts for r in memory.history)
    full_at: dict[str, datetime] = {}
    burst, rate = retention.bucket_burst, retention.bucket_per_hour
    for subscription, times in spends.items():
        tokens, previous = burst, None
        for ts in sorted(times):
            if previous is not None:
                tokens += (ts - previous) / HOUR * rate
            if tokens >= burst:
                full_at[subscription] = ts
                tokens = burst
            tokens, previous = tokens - 1, ts
    return full_at


def _subscription(target: str | None) -> str:
    parts = (target or "").split("/")
    return parts[2].lower() if len(parts) > 2 else ""


def memory_json(memory: TargetMemory) -> dict[str, Any]:
    pending, approval = memory.pending, memory.approval
    return {
        "last_known": {k: v.value for k, v in memory.last_known.items()},
        "history": [[r.ts.isoformat(), r.action, r.outcome.value] for r in memory.history],
        "episode_steps": sorted(memory.episode_steps),
        "last_reason": memory.last_reason,
        "breakers": {k: breaker_json(v) for k, v in memory.breakers.items()},
        "pending": None
        if pending is None
        else {
            "action": pending.action,
            "step": pending.step,
            "decided_at": pending.decided_at.isoformat(),
            "due": pending.due.isoformat(),
            "baseline": pending.baseline,
        },
        "approval": None
        if approval is None
        else {
            "id": approval.id,
            "action": approval.action,
            "params": approval.params,
            "asked_at": approval.asked_at.isoformat(),
            "answer": approval.answer,
        },
        "ok_since": memory.ok_since.isoformat() if memory.ok_since else None,
        "at_baseline": memory.at_baseline,
        "told_human": memory.told_human,
    }


def memory_from_json(data: Mapping[str, Any]) -> TargetMemory:
    pending, approval = data.get("pending"), data.get("approval")
    return TargetMemory(
        last_known={str(k): VerdictState(v) for k, v in data["last_known"].items()},
        history=[
            ActionRecord(_time(ts), str(action), OutcomeKind(outcome))
            for ts, action, outcome in data["history"]
        ],
        episode_steps={int(step) for step in data["episode_steps"]},
        last_reason=data.get("last_reason"),
        breakers={str(k): breaker_from_json(v) for k, v in data["breakers"].items()},
        pending=None
        if pending is None
        else PendingVerification(
            str(pending["action"]),
            int(pending["step"]),
            _time(pending["decided_at"]),
            _time(pending["due"]),
            {str(k): float(v) for k, v in pending["baseline"].items()},
        ),
        approval=None
        if approval is None
        else ApprovalRequest(
            str(approval["id"]),
            str(approval["action"]),
            dict(approval["params"]),
            _time(approval["asked_at"]),
            approval.get("answer"),
        ),
        ok_since=_time(data["ok_since"]) if data.get("ok_since") else None,
        at_baseline=bool(data["at_baseline"]),
        told_human=bool(data["told_human"]),
    )


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
