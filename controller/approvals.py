"""Answers to approval requests, written by ``remediator approve`` / ``reject``.

The controller is the only writer of its audit log (its hash chain has one author), so
an operator's answer goes to a small JSON-lines file beside it; the controller reads it
on each pass and appends the answer to the audit log itself, then acts on an approval
only if the decision is still valid.

An answer is taken only for a request the audit log shows still pending: asked, not
expired, not superseded by a newer request of the same policy, not answered already (in
the log or in the answers file), so a typo or a stale id is an error, not a silent no-op.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VERDICTS = ("approve", "reject")


class NotAnswerable(ValueError):
    """The id names no request that can be answered now; the message says why."""


@dataclass(frozen=True)
class Request:
    """One pending-approval decision of the audit log."""

    id: str
    policy: str
    target: str
    action: str
    params: dict[str, Any]
    asked_at: datetime
    expires_at: datetime
    answer: str | None = None  # from the audit log or the answers file
    superseded: bool = False  # a newer request of the policy, or the action ran


def who() -> str:
    """``user@host``: the person answering, by default."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def requests(
    records: Iterable[dict[str, Any]],
    ttl: Callable[[str], timedelta],
    given: dict[str, dict[str, Any]],
) -> dict[str, Request]:
    """Every approval request of the log by id, with what became of it.

    ``ttl`` gives a policy's ``approvalTtl``; ``given`` is :func:`answers`."""
    found: dict[str, Request] = {}
    latest: dict[str, str] = {}  # policy -> id of its newest request
    for record in records:
        policy, kind = str(record.get("policy") or ""), record.get("kind")
        rid = record.get("approval_id")
        if record.get("decision") == "pending-approval" and rid:
            if policy in latest:
                _mark(found, latest[policy], superseded=True)
            asked = _time(record["ts"])
            found[str(rid)] = Request(
                str(rid),
                policy,
                str(record.get("target") or ""),
                str(record.get("action")),
                dict(record.get("params") or {}),
                asked,
                asked + ttl(policy),
            )
            latest[policy] = str(rid)
        elif kind == "approval" and rid:
            _mark(found, str(rid), answer=str(record.get("decision")))
        elif kind == "result" and policy in latest:
            request = found[latest[policy]]
            if request.action == record.get("action"):
                _mark(found, request.id, superseded=True)
    for rid, item in given.items():
        if rid in found and found[rid].answer is None:
            _mark(found, rid, answer=str(item["answer"]))
    return found


def pending(requests_: dict[str, Request], now: datetime) -> list[Request]:
    """The requests an operator may still answer, oldest first."""
    return [
        r
        for r in requests_.values()
        if r.answer is None and not r.superseded and now <= r.expires_at
    ]


def check(requests_: dict[str, Request], request_id: str, now: datetime) -> Request:
    """The request ``request_id`` if it can be answered now; else NotAnswerable saying why."""
    request = requests_.get(request_id)
    if request is None:
        raise NotAnswerable(f"{request_id}: no approval request with this id in the audit log")
    if request.answer is not None:
        raise NotAnswerable(f"{request_id}: already answered ({request.answer})")
    if request.superseded:
        raise NotAnswerable(
            f"{request_id}: no longer pending: the controller asked again or the action ran"
        )
    if now > request.expires_at:
        raise NotAnswerable(
            f"{request_id}: expired at {request.expires_at.isoformat()}; "
            "the controller asks again while the proposal stands"
        )
    return request


def answer(path: Path, request_id: str, verdict: str, by: str) -> None:
    """Append one answer (``approve`` or ``reject``), durably."""
    if verdict not in VERDICTS:
        raise ValueError(f"{verdict!r} is not one of {', '.join(VERDICTS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"id": request_id, "answer": verdict, "by": by, "ts": datetime.now(UTC).isoformat()}
    with path.open("a", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write(json.dumps(line) + "\n")
        file.flush()
        os.fsync(file.fileno())


def answers(path: Path) -> dict[str, dict[str, Any]]:
    """The first answer per request id (a later one is refused when written, and ignored
    here); a line that does not parse is skipped."""
    found: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return found
    for raw in text.splitlines():
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and item.get("answer") in VERDICTS:
            found.setdefault(str(item.get("id")), item)
    return found


def _mark(found: dict[str, Request], rid: str, **change: Any) -> None:
    if rid in found:
        found[rid] = replace(found[rid], **change)


def _time(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
