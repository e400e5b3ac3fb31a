"""Answers to approval requests, written by ``remediator approve`` / ``reject``.

The controller is the only writer of its audit log (its hash chain has one author), so
an operator's answer goes to a small JSON-lines file beside it; the controller reads it
on each pass and appends the answer to the audit log itself, then acts on an approval
only if the decision is still valid.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def answer(path: Path, request_id: str, verdict: str, by: str) -> None:
    """Append one answer (``approve`` or ``reject``), durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"id": request_id, "answer": verdict, "by": by, "ts": datetime.now(UTC).isoformat()}
    with path.open("a", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write(json.dumps(line) + "\n")
        file.flush()
        os.fsync(file.fileno())


def answers(path: Path) -> dict[str, dict[str, Any]]:
    """The latest answer per request id; a line that does not parse is skipped."""
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
        if isinstance(item, dict) and item.get("answer") in ("approve", "reject"):
            found[str(item.get("id"))] = item
    return found
