"""The hash chain that makes the audit log tamper-evident.

Every line carries ``seq`` (1, 2, 3 …), ``prev`` (the previous line's hash; 64 zeros
for the first) and ``hash`` — SHA-256 over the line's canonical JSON without ``hash``
(keys sorted, no spaces, UTF-8). Editing a line breaks its hash; deleting, inserting or
reordering lines breaks ``seq`` or ``prev``. Verification names the first bad line.

A last line without its newline, or one that does not parse, is *torn*: a crash hit
mid-write. It is not tampering — the writer sets it aside (never deletes it) and
carries on from the last good line.

A plain SHA-256 chain can be re-hashed by anyone who edits a line. With a key, each
line's ``hash`` is an HMAC-SHA256 instead and the line says so (``"mac": "hmac-sha256"``,
covered by the MAC): without the key nobody can re-seal an edited line. A log may turn
keyed once (an older unkeyed log gains keyed lines: their MACs cover the unkeyed
prefix through ``prev``) but never back: an unkeyed line after a keyed one is a break.
Without the key, keyed lines can be checked for their shape (``seq``, ``prev``) only.

A file that a rotation started begins with a ``snapshot`` line: the chain of that file
starts at the snapshot's ``seq`` and ``prev`` (the previous file's last line), so each
file verifies alone and a series verifies across its links.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
MAC = "hmac-sha256"  # the ``mac`` of a keyed line
SNAPSHOT = "snapshot"  # the kind of a rotated-in file's first line


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes a line's hash is taken over: sorted keys, compact, UTF-8."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def line_hash(fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The chain's one hash: SHA-256 of the canonical bytes, or their HMAC-SHA256 with a key."""
    body = canonical(fields)
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def seal(
    fields: Mapping[str, Any], seq: int, prev: str, key: bytes | None = None
) -> dict[str, Any]:
    """``fields`` with its place in the chain and its own hash (a MAC with a key) added."""
    sealed = {**fields, "seq": seq, "prev": prev}
    if key is not None:
        sealed["mac"] = MAC
    sealed["hash"] = line_hash(sealed, key)
    return sealed


@dataclass
class Verification:
    """What a walk along the chain found."""

    lines: int = 0  # good lines
    last_hash: str = GENESIS
    first_bad: int | None = None  # 1-based line number
    problem: str | None = None
    torn: str | None = None  # the raw text of a torn last line
    records: list[dict[str, Any]] = field(default_factory=list)
    first_seq: int = 1  # the first line's seq (a snapshot's, after a rotation)
    first_prev: str = GENESIS  # the first line's prev: the previous file's last hash
    keyed_from: int | None = None  # the first line sealed with a key (its MAC)
    macs_checked: bool = False  # keyed lines were checked with the key, not by shape only
    # whole, but unproven: nothing would show lines cut from the end (the head is gone),
    # or a key is given and no line is sealed with it
    unguarded: str | None = None
    notes: list[str] = field(default_factory=list)  # worth a look; nothing is wrong

    @property
    def ok(self) -> bool:
        """The chain is whole: every line fits (head and anchor included)."""
        return self.first_bad is None

    @property
    def trusted(self) -> bool:
        """Whole, and a cut from the end would have shown: what a writer may carry on from."""
        return self.ok and self.unguarded is None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.lines - 1


def verify(
    raw_lines: Iterable[str],
    *,
    keep: bool = True,
    key: bytes | None = None,
    each: Callable[[dict[str, Any]], None] | None = None,
) -> Verification:
    """Walk the chain; stop at the first bad line. ``raw_lines`` keep their newlines.

    With ``key``, keyed lines' MACs are checked; without it, only their shape. Streams:
    one line of look-ahead (to tell a torn last line), each good line handed to ``each``
    and kept only when ``keep``.
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
        problem = _seal_problem(result, index, fields, key)
        if problem is not None:
            return _bad(result, index, problem)
        result.lines += 1
        result.last_hash = fields["hash"]
        if keep:
            result.records.append(fields)
        if each is not None:
            each(fields)
    return result


def _seal_problem(
    result: Verification, index: int, fields: Mapping[str, Any], key: bytes | None
) -> str | None:
    """Why the line's own hash (or MAC) does not hold, or None."""
    mac = fields.get("mac")
    if mac is None:
        if result.keyed_from is not None:
            return f"an unkeyed line after keyed ones (keyed from line {result.keyed_from})"
        if fields.get("hash") != line_hash(fields):
            return "hash does not match the line's content"
        return None
    if mac != MAC:
        return f"unknown mac {mac!r}"
    if result.keyed_from is None:
        result.keyed_from = index
    if key is None:  # the shape only: seq and prev were checked
        if not isinstance(fields.get("hash"), str):
            return "a keyed line without its MAC"
        return None
    result.macs_checked = True
    if not hmac.compare_digest(str(fields.get("hash")), line_hash(fields, key)):
        return (
            "MAC does not match: the line was changed or re-hashed, "
            "or this is not the key it was written with"
        )
    return None


def _bad(result: Verification, line: int, problem: str) -> Verification:
    result.first_bad = line
    result.problem = problem
    return result
