"""What a target's reconcile passes carry from one pass to the next.

The live pass and the start-up replay of the audit log change memory through the same
functions here, so a restart or a crash rebuilds exactly the cooldowns, budgets,
breakers, pending verification and ladder position the controller had.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.core.breaker import Breaker
from controller.core.plan import ONE_SHOT_ACTIONS
from controller.model import ActionRecord, Efficacy, OutcomeKind, VerdictState


@dataclass(frozen=True)
class PendingVerification:
    """An action waiting to be judged once its effect has had time to show."""

    action: str
    step: int
    decided_at: datetime
    due: datetime
    baseline: dict[str, float]  # objective → value when the action was decided
    # a Container Apps change: the revision it made has been seen ready (until then, the
    # settle time runs again from each pass that finds it still provisioned)
    revision_ready: bool = False


@dataclass(frozen=True)
class ApprovalRequest:
    """A rung marked ``approval: required`` that every guard allowed, waiting for a human."""

    id: str
    action: str
    params: dict[str, Any]
    asked_at: datetime
    answer: str | None = None  # approve | reject


@dataclass
class TargetMemory:
    """One target's memory."""

    last_known: dict[str, VerdictState] = field(default_factory=dict)
    history: list[ActionRecord] = field(default_factory=list)
    # ladder rungs that may not run again in this breach: one-shot steps already run,
    # and steps verified not to help
    episode_steps: set[int] = field(default_factory=set)
    last_reason: str | None = None
    breakers: dict[str, Breaker] = field(default_factory=dict)
    pending: PendingVerification | None = None
    approval: ApprovalRequest | None = None
    ok_since: datetime | None = None  # every objective ok, without a gap, since then
    at_baseline: bool = False  # seen at its baseline, and nothing has acted since
    told_human: bool = False  # this breach was escalated as one nothing here can fix

    def note_verdicts(self, states: dict[str, VerdictState], now: datetime) -> bool:
        """Remember known states; a fully healthy target starts a new episode.

        Returns whether any known state changed.
        """
        changed = False
        for objective, state in states.items():
            if state is VerdictState.UNKNOWN:
                continue
            changed |= self.last_known.get(objective) is not state
            self.last_known[objective] = state
        healthy = bool(states) and all(s is VerdictState.OK for s in states.values())
        if healthy:
            self.episode_steps.clear()
            self.told_human = False
            self.ok_since = self.ok_since or now
        else:
            self.ok_since = None  # unknown data too: stepping back needs proof of health
        return changed

    def note_action(
        self, ts: datetime, action: str, outcome: OutcomeKind, step: int | None
    ) -> None:
        """An action ran, failed or would have run: it counts for cooldown and budget."""
        self.history.append(ActionRecord(ts, action, outcome))
        self.at_baseline = False
        if action in ONE_SHOT_ACTIONS and step is not None:
            self.episode_steps.add(step)

    def note_judgement(self, pending: PendingVerification, efficacy: Efficacy) -> None:
        """A verified action that did not help is not tried again in this breach."""
        if efficacy is not Efficacy.IMPROVED:
            self.episode_steps.add(pending.step)
        self.pending = None


def target_key(policy: str, resource_id: str) -> str:
    """What names one target's memory: its policy and its resource (a selector policy has
    many). Policy names hold no ``|``; resource ids are case-insensitive. Interned: the
    loop, the log's replay and the reconciler each key by it, one string for all three."""
    return sys.intern(f"{policy}|{resource_id.lower()}")


def breaker_json(breaker: Breaker) -> dict[str, Any]:
    return {
        "consecutiveBad": breaker.consecutive_bad,
        "openedAt": breaker.opened_at.isoformat() if breaker.opened_at else None,
        "trialRunning": breaker.trial_running,
    }


def breaker_from_json(data: dict[str, Any]) -> Breaker:
    opened = data.get("openedAt")
    return Breaker(
        consecutive_bad=int(data.get("consecutiveBad", 0)),
        opened_at=datetime.fromisoformat(opened) if opened else None,
        trial_running=bool(data.get("trialRunning", False)),
    )
