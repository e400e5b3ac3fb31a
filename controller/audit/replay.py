"""Rebuild each target's memory from the audit log: the log is the controller's memory.

Replaying in order restores, per policy: the last known state of each objective, every
action that ran, failed or would have run (what cooldowns and budgets count), the
ladder rungs used up in the current breach, each action's circuit breaker, an action
still waiting to be judged, the last reason recorded, and whether the breach was
already put to a person (an escalation is sent once per breach, across restarts too);
and for the whole fleet, whether fail static holds. An ``intent`` with no ``result``
after it is an action interrupted by a crash; it is returned for settling by reading
the resource — never retried blindly.

A ``snapshot`` line (the first line of a file a rotation started) carries all of this
as it stood at the end of the previous file: replay restarts from it, so the files
before it need not be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from controller.audit import snapshot
from controller.audit.chain import SNAPSHOT
from controller.audit.snapshot import Retention
from controller.memory import (
    ApprovalRequest,
    PendingVerification,
    TargetMemory,
    breaker_from_json,
    target_key,
)
from controller.model import Efficacy, OutcomeKind, VerdictState

_COUNTED = {o.value for o in OutcomeKind}
NEEDS_HUMAN = "needs a human"  # how a needs-human escalation's reason begins
FAIL_STATIC = "fail static: "  # … and fail static's, engaging
FAIL_STATIC_HOLDS = "; no target acts until this clears"
FAIL_STATIC_CLEARED = "fail static cleared"  # … and its end


@dataclass
class Replayed:
    """Memory per target (:func:`~controller.memory.target_key`: its policy and resource),
    and the intents still waiting for a result."""

    memories: dict[str, TargetMemory] = field(default_factory=dict)
    # by target: every intent with no result yet, oldest first (a full disk can leave more
    # than one: each is settled, none forgotten)
    open_intents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_static: str | None = None  # why the fleet holds still, if it does
    targets: dict[str, str] = field(default_factory=dict)  # target key → its resource ID
    # with shards: spend a previous owner handed over with the partition: [ts, subscription,
    # target] each
    carried: list[list[str]] = field(default_factory=list)
    # … and what its slice of each subscription's bucket lacked then (tokens), as the
    # last ``budget`` line that says (``params.owed``) left it; when it was written
    owed: dict[str, float] = field(default_factory=dict)
    owed_at: str | None = None

    def memory(self, key: str) -> TargetMemory:
        return self.memories.setdefault(key, TargetMemory())

    def memory_of(self, policy: str, resource_id: str) -> TargetMemory | None:
        """What the log remembers of one target, if anything."""
        return self.memories.get(target_key(policy, resource_id))

    def intents_of(self, policy: str, resource_id: str) -> list[dict[str, Any]]:
        """The target's intents still without a result, taken out (they go to be settled)."""
        return self.open_intents.pop(target_key(policy, resource_id), [])


def replay(records: Iterable[dict[str, Any]]) -> Replayed:
    """Fold verified audit records, oldest first, into per-policy memory."""
    out = Replayed()
    for record in records:
        fold(out, record)
    return out


def fold(out: Replayed, record: dict[str, Any]) -> None:
    """One verified line into ``out``: a snapshot replaces everything before it."""
    if record.get("kind") == SNAPSHOT:
        held = snapshot.read(record)
        out.memories, out.open_intents = held.memories, held.open_intents
        out.fail_static, out.targets = held.fail_static, held.targets
        out.carried = held.carried
        out.owed, out.owed_at = held.owed, held.owed_at
        return
    if record.get("kind") == "budget":  # the fleet's line: spend handed over, no target's
        params = record.get("params") or {}
        spent = params.get("spent") or []
        out.carried += [[str(ts), str(sub), str(key)] for ts, sub, key in spent]
        if isinstance(params.get("owed"), dict):  # a line before it carried none: as is
            out.owed, out.owed_at = snapshot.owed_of(params["owed"]), str(record.get("ts"))
        return
    if record.get("kind") == "resolved":  # the fleet's line: no target's verdicts
        _escalated(out, None, str(record.get("reason") or ""))
        return
    policy = record.get("policy")
    if isinstance(policy, str):
        target = str(record.get("target", ""))
        key = target_key(policy, target)
        out.targets[key] = target
        apply(out, out.memory(key), record, key)


def snapshot_line(
    out: Replayed, ts: str, rotated_from: str, retention: Retention
) -> dict[str, Any]:
    """``out`` as a snapshot line's fields, its action history pruned (in ``out`` too)."""
    held = snapshot.Contents(
        out.memories,
        out.open_intents,
        out.fail_static,
        out.targets,
        out.carried,
        out.owed,
        out.owed_at,
    )
    return snapshot.line(held, ts, rotated_from, retention)


def apply(out: Replayed, memory: TargetMemory, record: dict[str, Any], key: str) -> None:
    """One audit line's effect on the memory of the target ``key`` names."""
    states = {}
    for verdict in record.get("verdicts") or []:
        try:
            states[str(verdict["objective"])] = VerdictState(verdict["state"])
        except (KeyError, ValueError):
            continue
    memory.note_verdicts(states, _time(record["ts"]))
    kind = record.get("kind", "decision")
    action = record.get("action")
    if isinstance(record.get("breaker"), dict) and action:
        memory.breakers[str(action)] = breaker_from_json(record["breaker"])
    if kind == "escalation":
        _escalated(out, memory, str(record.get("reason") or ""))
    if kind == "intent":
        out.open_intents.setdefault(key, []).append(record)
        return
    if kind == "result":
        _close_intent(out, key, record.get("intent"))
    if kind in ("result", "decision") and record.get("outcome") in _COUNTED and action:
        step = record.get("step")
        memory.note_action(_time(record["ts"]), str(action), OutcomeKind(record["outcome"]), step)
        if record.get("verify_at") and isinstance(step, int):
            memory.pending = PendingVerification(
                str(action),
                step,
                _time(record["ts"]),
                _time(record["verify_at"]),
                baseline_of(record),
            )
    if record.get("decision") == "pending-approval" and record.get("approval_id"):
        memory.approval = ApprovalRequest(
            str(record["approval_id"]),
            str(action),
            dict(record.get("params") or {}),
            _time(record["ts"]),
        )
    request = memory.approval
    if kind == "approval" and request is not None and request.id == record.get("approval_id"):
        memory.approval = replace(request, answer=record.get("decision"))
    if kind == "result" and memory.approval is not None and memory.approval.action == action:
        memory.approval = None
    if kind == "verification" and memory.pending is not None and record.get("efficacy"):
        memory.note_judgement(memory.pending, Efficacy(record["efficacy"]))
    if kind in ("decision", "verdict", "result"):
        memory.last_reason = record.get("reason")


def _escalated(out: Replayed, memory: TargetMemory | None, reason: str) -> None:
    """What a once-per-breach escalation leaves behind, so a restart does not repeat it."""
    if reason.startswith(NEEDS_HUMAN) and memory is not None:
        memory.told_human = True
    elif reason.startswith(FAIL_STATIC):
        out.fail_static = reason.removeprefix(FAIL_STATIC).removesuffix(FAIL_STATIC_HOLDS)
    elif reason.startswith(FAIL_STATIC_CLEARED):
        out.fail_static = None


def _close_intent(out: Replayed, key: str, seq: Any) -> None:
    """A result closes the intent it names (an older result without ``intent``: the last)."""
    still_open = out.open_intents.get(key)
    if not still_open:
        return
    if isinstance(seq, int):
        still_open[:] = [i for i in still_open if i.get("seq") != seq]
    else:
        still_open.pop()
    if not still_open:
        del out.open_intents[key]


def baseline_of(record: dict[str, Any]) -> dict[str, float]:
    """The values of the objectives in breach when the action was decided."""
    return {
        str(v["objective"]): float(v["value"])
        for v in record.get("verdicts") or []
        if v.get("state") == "breach" and isinstance(v.get("value"), int | float)
    }


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
