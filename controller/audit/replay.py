"""Rebuild each target's memory from the audit log: the log is the controller's memory.

Replaying in order restores, per policy: the last known state of each objective, every
action that ran, failed or would have run (what cooldowns and budgets count), the
one-shot steps already used in the current breach, and the last reason recorded. An
``intent`` with no ``result`` after it is an action interrupted by a crash; it is
returned for settling by reading the resource — never retried blindly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.core.plan import ONE_SHOT_ACTIONS
from controller.memory import TargetMemory
from controller.model import ActionRecord, OutcomeKind, VerdictState

_COUNTED = {o.value for o in (OutcomeKind.SUCCEEDED, OutcomeKind.FAILED, OutcomeKind.WOULD_RUN)}


@dataclass
class Replayed:
    """Memory per policy name, and the intents still waiting for a result."""

    memories: dict[str, TargetMemory] = field(default_factory=dict)
    open_intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # by policy

    def memory(self, policy: str) -> TargetMemory:
        return self.memories.setdefault(policy, TargetMemory())


def replay(records: Iterable[dict[str, Any]]) -> Replayed:
    """Fold verified audit records, oldest first, into per-policy memory."""
    out = Replayed()
    for record in records:
        policy = record.get("policy")
        if not isinstance(policy, str):
            continue
        memory = out.memory(policy)
        _verdicts(memory, record.get("verdicts") or [])
        kind = record.get("kind", "decision")
        if kind == "intent":
            out.open_intents[policy] = record
            continue
        if kind == "result":
            out.open_intents.pop(policy, None)
        if record.get("outcome") in _COUNTED and record.get("action"):
            remember_action(memory, record)
        memory.last_reason = record.get("reason")
    return out


def remember_action(memory: TargetMemory, record: dict[str, Any]) -> None:
    """Count an action (from a result, a would-run, or a settled intent)."""
    ts = datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
    action = str(record["action"])
    memory.history.append(ActionRecord(ts, action, OutcomeKind(record["outcome"])))
    step = record.get("step")
    if action in ONE_SHOT_ACTIONS and isinstance(step, int):
        memory.episode_steps.add(step)


def _verdicts(memory: TargetMemory, verdicts: list[dict[str, Any]]) -> None:
    states = []
    for verdict in verdicts:
        try:
            state = VerdictState(verdict["state"])
        except (KeyError, ValueError):
            continue
        states.append(state)
        if state is not VerdictState.UNKNOWN:
            memory.last_known[str(verdict.get("objective"))] = state
    if states and all(s is VerdictState.OK for s in states):
        memory.episode_steps.clear()
