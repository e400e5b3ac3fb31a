"""Rebuild each target's memory from the audit log: the log is the controller's memory.

Replaying in order restores, per policy: the last known state of each objective, every
action that ran, failed or would have run (what cooldowns and budgets count), the
ladder rungs used up in the current breach, each action's circuit breaker, an action
still waiting to be judged, and the last reason recorded. An ``intent`` with no
``result`` after it is an action interrupted by a crash; it is returned for settling
by reading the resource — never retried blindly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from controller.memory import (
    ApprovalRequest,
    PendingVerification,
    TargetMemory,
    breaker_from_json,
)
from controller.model import Efficacy, OutcomeKind, VerdictState

_COUNTED = {o.value for o in OutcomeKind}


@dataclass
class Replayed:
    """Memory per policy name, and the intents still waiting for a result."""

    memories: dict[str, TargetMemory] = field(default_factory=dict)
    # by policy: every intent with no result yet, oldest first (a full disk can leave more
    # than one: each is settled, none forgotten)
    open_intents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def memory(self, policy: str) -> TargetMemory:
        return self.memories.setdefault(policy, TargetMemory())


def replay(records: Iterable[dict[str, Any]]) -> Replayed:
    """Fold verified audit records, oldest first, into per-policy memory."""
    out = Replayed()
    for record in records:
        policy = record.get("policy")
        if isinstance(policy, str):
            apply(out, out.memory(policy), record)
    return out


def apply(out: Replayed, memory: TargetMemory, record: dict[str, Any]) -> None:
    """One audit line's effect on memory."""
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
    if kind == "intent":
        out.open_intents.setdefault(str(record["policy"]), []).append(record)
        return
    if kind == "result":
        _close_intent(out, str(record["policy"]), record.get("intent"))
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


def _close_intent(out: Replayed, policy: str, seq: Any) -> None:
    """A result closes the intent it names (an older result without ``intent``: the last)."""
    still_open = out.open_intents.get(policy)
    if not still_open:
        return
    if isinstance(seq, int):
        still_open[:] = [i for i in still_open if i.get("seq") != seq]
    else:
        still_open.pop()
    if not still_open:
        del out.open_intents[policy]


def baseline_of(record: dict[str, Any]) -> dict[str, float]:
    """The values of the objectives in breach when the action was decided."""
    return {
        str(v["objective"]): float(v["value"])
        for v in record.get("verdicts") or []
        if v.get("state") == "breach" and isinstance(v.get("value"), int | float)
    }


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
