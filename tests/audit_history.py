"""Audit histories for tests: lines of every kind, for several targets, written through the
real audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.audit.log import AuditSink, Record
from tests.conftest import APP_ID

ACTIONS = ("scaleOut", "scaleUp", "restartRevision")
STATES = ("ok", "breach", "unknown", "recovering")


def target(policy: int) -> str:
    subscription = f"00000000-0000-0000-0000-00000000000{policy % 2}"
    return APP_ID.replace("00000000-0000-0000-0000-000000000001", subscription).replace(
        "agentstudio-api", f"app-{policy}"
    )


@dataclass
class Writer:
    """Writes one op at a time, keeping what later lines refer to (intents, approvals)."""

    audit: AuditSink
    now: datetime
    open_intents: dict[int, list[int]] = field(default_factory=dict)
    approvals: dict[int, str] = field(default_factory=dict)
    lines: int = 0

    def line(self, policy: int, kind: str, states: tuple[str, ...], **fields: Any) -> int:
        verdicts = [
            {
                "objective": f"o{i}",
                "state": state,
                "value": 50.0 + 10 * i,
                "threshold": 70.0,
                "reason": f"{state} for 5m",
                "worst": 60.0 + 10 * i,
            }
            for i, state in enumerate(states)
        ]
        worst = next((s for s in ("breach", "unknown", "recovering") if s in states), "ok")
        record = {
            "ts": self.now,
            "kind": kind,
            "policy": f"p{policy}",
            "target": target(policy),
            "verdict": worst,
            "verdicts": verdicts,
            "action": None,
            "params": {},
            "decision": None,
            "reason": f"{kind} at {self.now:%H:%M}",
            "mode": "live",
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": f"r{self.lines}",
            **fields,
        }
        self.lines += 1
        return self.audit.append(Record.model_validate(record))

    def op(self, op: tuple[Any, ...]) -> None:
        """One step of history: ``(minutes later, policy, what, choice, states)``."""
        gap, policy, what, choice, states = op
        self.now += timedelta(minutes=gap)
        action = ACTIONS[choice % len(ACTIONS)]
        breaker = {
            "consecutiveBad": choice % 4,
            "openedAt": self.now.isoformat() if choice % 3 == 0 else None,
            "trialRunning": choice % 5 == 0,
        }
        if what == "verdict":
            self.line(policy, "verdict", states)
        elif what == "deny":
            self.line(policy, "decision", states, action=action, decision="deny", guard="cooldown")
        elif what == "would-run":
            self.line(
                policy,
                "decision",
                states,
                action=action,
                decision="allow",
                outcome="would-run",
                step=choice % 3,
                breaker=breaker,
            )
        elif what == "intent":
            seq = self.line(
                policy, "intent", states, action=action, decision="allow", step=choice % 3
            )
            self.open_intents.setdefault(policy, []).append(seq)
        elif what == "result":
            waiting = self.open_intents.get(policy) or []
            intent = waiting.pop(choice % len(waiting)) if waiting else None
            self.line(
                policy,
                "result",
                states,
                action=action,
                decision="allow",
                outcome="succeeded" if choice % 2 else "failed",
                step=choice % 3,
                intent=intent,
                verify_at=self.now + timedelta(minutes=10) if choice % 2 else None,
                breaker=breaker,
            )
        elif what == "verification":
            efficacy = ("improved", "not-improved", "failed")[choice % 3]
            self.line(
                policy, "verification", states, action=action, efficacy=efficacy, breaker=breaker
            )
        elif what == "needs-human":
            self.line(policy, "escalation", states, reason="needs a human: o0 in breach; watch")
        elif what == "fail-static":
            reason = (
                "fail static: 4 of 8 targets in breach at once; no target acts until this clears"
            )
            self.line(policy, "escalation", states, reason=reason)
        elif what == "resolved":
            reason = "fail static cleared (4 of 8 targets in breach at once): targets act again"
            self.line(policy, "resolved", states, reason=reason)
        elif what == "ask":
            self.approvals[policy] = f"a{self.lines}"
            self.line(
                policy,
                "decision",
                states,
                action=action,
                decision="pending-approval",
                approval_id=self.approvals[policy],
                params={"minReplicas": choice},
            )
        elif what == "answer" and policy in self.approvals:
            self.line(
                policy,
                "approval",
                states,
                action=action,
                decision="approve" if choice % 2 else "reject",
                approval_id=self.approvals[policy],
            )


KINDS = (
    "verdict",
    "deny",
    "would-run",
    "intent",
    "result",
    "verification",
    "needs-human",
    "fail-static",
    "resolved",
    "ask",
    "answer",
)
