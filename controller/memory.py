"""What a target's reconcile passes carry from one pass to the next.

It is rebuilt from the audit log at start (:mod:`controller.audit.replay`), so a
restart or a crash never resets a cooldown, a budget or a ladder position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.model import ActionRecord, VerdictState


@dataclass
class TargetMemory:
    """One target's memory."""

    last_known: dict[str, VerdictState] = field(default_factory=dict)
    history: list[ActionRecord] = field(default_factory=list)
    episode_steps: set[int] = field(default_factory=set)
    last_reason: str | None = None
