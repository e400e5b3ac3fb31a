"""The audit chain's progress, copied to storage apart from the log.

``<log>.head`` lives beside the log: whoever can cut lines from the log can delete or
rewrite it too. An anchor is an append-only JSON-lines file on other storage (another
disk, a share the log's host may only append to) holding ``{"seq", "hash"}`` after each
line. Verification holds the log to it: a line the anchor recorded that is missing
(cut from the end) or different (edited and re-hashed, or replaced) is found, even
when the head is gone. A ``cut`` entry, written by ``remediator audit repair``, voids
what the anchor recorded after its ``seq``: the chain was re-established from there.

An anchor is only as safe as its storage: someone able to rewrite both files can hide
anything. A torn last entry (a crash mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class AnchorUnreadable(Exception):
    """The anchor exists but cannot be read: the log cannot be held to it."""


def append_anchor(path: Path, seq: int, digest: str, *, cut: bool = False) -> None:
    """Add one entry, fsynced. Raises OSError."""
    entry: dict[str, Any] = {"seq": seq, "hash": digest}
    if cut:
        entry["cut"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(entry) + "\n")
        file.flush()
        os.fsync(file.fileno())


def read_anchor(path: Path) -> dict[int, str] | None:
    """``seq → hash`` as the anchor holds it now (cuts applied); None if there is none.
    Raises AnchorUnreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorUnreadable(f"{path}: cannot read the audit anchor: {exc}") from exc
    expected: dict[int, str] = {}
    for raw in text.splitlines(keepends=True):
        try:
            entry = json.loads(raw)
            seq, digest = int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError):
            if raw.endswith("\n"):
                raise AnchorUnreadable(f"{path}: not an anchor entry: {raw.strip()[:80]}") from None
            continue  # torn by a crash
        if entry.get("cut"):
            expected = {s: h for s, h in expected.items() if s <= seq}
        expected[seq] = digest
    return expected
