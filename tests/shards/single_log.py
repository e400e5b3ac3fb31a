"""The audit log of a controller that ran as one process, before shards were turned on.

Written line by line as the single process writes them (the same records, sealed into
the same chain): actions of the last hour with their results, an action whose three
failures opened its breaker, an intent sent just before the process stopped (no result),
and fail static engaged (the fleet's, which stays with the replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.audit.log import AuditLog, Record
from controller.audit.replay import FAIL_STATIC, FAIL_STATIC_HOLDS
from controller.memory import target_key

POLICY = "api-cpu"
SUB = "00000000-0000-0000-0000-000000000001"


def app(name: str, group: str = "rg-fleet-east") -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.App/containerApps/{name}"
    )


# with 2 partitions: app-007 and app-001 hash to 1, app-004, app-013 and app-042 to 0
INTENT_APP = app("app-007")  # its intent went out, then the process stopped
BREAKER_APP = app("app-042", "rg-fleet-west")  # three failures: its breaker is open
SPENT_APPS = [app("app-001"), app("app-004", "rg-fleet-west"), app("app-013")]


@dataclass(frozen=True)
class SingleLog:
    """What the single process left: its log, and what each partition should get."""

    path: Path
    intent_seq: int  # the seq of the intent left without a result
    opened_at: datetime  # when the breaker opened


def line(ts: datetime, kind: str, target: str, **fields: Any) -> Record:
    body: dict[str, Any] = {
        "ts": ts,
        "kind": kind,
        "policy": POLICY,
        "target": target,
        "verdict": "breach",
        "verdicts": [{"objective": "cpu", "state": "breach", "value": 96.0}],
        "action": "scaleOut",
        "params": {"minReplicas": 2},
        "decision": "allow",
        "reason": "guards passed",
        "mode": "live",
        "outcome": None,
        "before": {"minReplicas": 1, "maxReplicas": 10},
        "after": {"minReplicas": 2, "maxReplicas": 10},
        "reconcile_id": f"{kind}-{ts.isoformat()}",
        "step": 0,
        **fields,
    }
    return Record.model_validate(body)


def write_single_log(
    path: Path, start: datetime, key: bytes | None = None, anchor: Path | None = None
) -> SingleLog:
    """The single process's log: every line between ``start`` and ``start + 6m`` (each
    line's seq and hash copied to ``anchor`` too, when given: its ``auditAnchor``)."""
    at = start + timedelta(minutes=1)
    with AuditLog(path, key=key, anchor=anchor) as log:
        for target in SPENT_APPS:  # one scale-out each, succeeded
            seq = log.append(line(at, "intent", target))
            log.append(line(at, "result", target, outcome="succeeded", intent=seq))
            at += timedelta(seconds=20)
        opened_at = at
        for failures in (1, 2, 3):  # three failed scale-outs: the breaker opens
            seq = log.append(line(at, "intent", BREAKER_APP))
            breaker = {
                "consecutiveBad": failures,
                "openedAt": at.isoformat() if failures == 3 else None,
                "trialRunning": False,
            }
            opened_at = at
            log.append(
                line(at, "result", BREAKER_APP, outcome="failed", intent=seq, breaker=breaker)
            )
            at += timedelta(seconds=30)
        escalation = f"{FAIL_STATIC}4 of 6 targets in breach{FAIL_STATIC_HOLDS}"
        log.append(line(at, "escalation", SPENT_APPS[0], reason=escalation, decision=None))
        intent = log.append(line(start + timedelta(minutes=6), "intent", INTENT_APP))
    return SingleLog(path, intent, opened_at)


def key_of(target: str) -> str:
    return target_key(POLICY, target)
