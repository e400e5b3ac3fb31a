"""The hash chain that makes the audit log tamper-evident.

Every line carries ``seq`` (1, 2, 3 …), ``prev`` (the previous line's hash; 64 zeros
for the first) and ``hash`` — SHA-256 over the line's canonical JSON without ``hash``
(keys sorted, no spaces, UTF-8). Editing a line breaks its hash; deleting, inserting or
reordering lines breaks ``seq`` or ``prev``. Verification names the first bad line.

A last line without its newline, or one that does not parse, is *torn*: a crash hit
mid-write. It is not tampering — the writer sets it aside (never deletes it) and
carries on from the last good line.

A file that a rotation started begins with a ``snapshot`` line: the chain of that file
starts at the snapshot's ``seq`` and ``prev`` (the previous file's last line), so each
file verifies alone and a series verifies across its links.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
SNAPSHOT = "snapshot"  # the kind of a rotated-in file's first line


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes a line's hash is taken over: sorted keys, compact, UTF-8."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def line_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(fields)).hexdigest()


def seal(fields: Mapping[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """``fields`` with its place in the chain and its own hash added."""
    sealed = {**fields, "seq": seq, "prev": prev}
    sealed["hash"] = line_hash(sealed)
    return sealed


@dataclass
class Verification:
    """What a walk along the chain found."""

    lines: int = 0  # good lines
    first_seq: int = 1  # the first line's seq (a snapshot's, after a rotation)
    first_prev: str = GENESIS  # the first line's prev: the previous file's last hash
    last_hash: str = GENESIS
    first_bad: int | None = None  # 1-based line number
    problem: str | None = None
    torn: str | None = None  # the raw text of a torn last line
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.lines - 1


def verify(
    raw_lines: Iterable[str],
    *,
    keep: bool = True,
    each: Callable[[dict[str, Any]], None] | None = None,
) -> Verification:
    """Walk the chain; stop at the first bad line. ``raw_lines`` keep their newlines.

    Streams: one line of look-ahead (to tell a torn last line), each good line handed
    to ``each`` and kept only when ``keep``.
    """
    result = Verification()
    lines = iter(raw_lines)
    following = next(lines, None)
    index = 0
    while following is not None:
        raw, following = following, next(lines, None)
        index += 1
        is_last = following is None
        if not raw.strip():
            if is_last:
                break
            return _bad(result, index, "empty line inside the log")
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError:
            if is_last:
                result.torn = raw
                break
            return _bad(result, index, "not valid JSON")
        if is_last and not raw.endswith("\n"):
            result.torn = raw
            break
        if not isinstance(fields, dict):
            return _bad(result, index, "not a JSON object")
        if index == 1 and fields.get("kind") == SNAPSHOT and isinstance(fields.get("seq"), int):
            result.first_seq, result.first_prev = fields["seq"], str(fields.get("prev"))
            result.last_hash = result.first_prev
        expected_seq = result.first_seq + result.lines
        if fields.get("seq") != expected_seq:
            got = fields.get("seq")
            return _bad(result, index, f"seq is {got}, expected {expected_seq}")
        if fields.get("prev") != result.last_hash:
            return _bad(result, index, "prev does not match the previous line's hash")
        if fields.get("hash") != line_hash(fields):
            return _bad(result, index, "hash does not match the line's content")
        result.lines += 1
        result.last_hash = fields["hash"]
        if keep:
            result.records.append(fields)
        if each is not None:
            each(fields)
    return result


def _bad(result: Verification, line: int, problem: str) -> Verification:
    result.first_bad = line
    result.problem = problem
    return result
