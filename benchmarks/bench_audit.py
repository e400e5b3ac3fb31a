"""What the audit log's modes cost: unkeyed, keyed (HMAC-SHA256), anchored, both.

For each mode, in one run on one disk: fsyncs per appended line (counted: an append's
wall time is the disk's fsync latency, which this shared machine cannot measure fairly)
and the time to open (verify) a log of ``--lines`` lines, as a controller does at every
start — the median of ``--rounds`` rounds, the modes interleaved in each, so a noisy
neighbour touches them alike. Prints a Markdown section for docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_audit.py [--appends 100] [--lines 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.audit.chain import GENESIS, seal
from controller.audit.log import AuditLog, Record, write_head

KEY = b"0123456789abcdef0123456789abcdef"
MODES = {
    "unkeyed": (None, False),
    "keyed": (KEY, False),
    "anchored": (None, True),
    "keyed + anchored": (KEY, True),
}


def record(i: int) -> Record:
    return Record.model_validate(
        {
            "ts": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
            "policy": "api-cpu",
            "target": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.App/containerApps/a",
            "verdict": "breach",
            "verdicts": [{"objective": "cpu", "state": "breach", "value": 90.0}],
            "action": "scaleOut",
            "params": {"minReplicas": 2},
            "decision": "deny",
            "reason": "cooldown: last action 30s ago; cooldown is 5m",
            "mode": "live",
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": f"r{i}",
        }
    )


def measure(
    folder: Path, key: bytes | None, anchored: bool, appends: int, lines: int
) -> dict[str, float]:
    """fsyncs per line over ``appends`` appends; then seconds to open a ``lines``-line log
    (written in bulk: the chain, head and anchor exactly as appends leave them)."""
    anchor = folder / "elsewhere" / "audit.anchor" if anchored else None
    path = folder / "audit.jsonl"
    real_fsync, count = os.fsync, [0]

    def counting(fd: int) -> None:
        count[0] += 1
        real_fsync(fd)

    with AuditLog(path, key=key, anchor=anchor) as audit:
        os.fsync = counting
        try:
            for i in range(appends):
                audit.append(record(i))
        finally:
            os.fsync = real_fsync
    big = folder / "big.jsonl"
    prev, text, entries = GENESIS, [], []
    for i in range(lines):
        sealed = seal(record(i).model_dump(mode="json"), i + 1, prev, key)
        prev = sealed["hash"]
        text.append(json.dumps(sealed, ensure_ascii=False) + "\n")
        entries.append(json.dumps({"seq": i + 1, "hash": prev}) + "\n")
    big.write_text("".join(text))
    write_head(big, lines, prev, key)
    big_anchor = None
    if anchored:
        big_anchor = folder / "elsewhere" / "big.anchor"
        big_anchor.write_text("".join(entries))
    started = time.perf_counter()
    with AuditLog(big, key=key, anchor=big_anchor) as audit:
        assert len(audit.records) == lines
    return {"fsyncs": count[0] / appends, "open": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=100)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in MODES}
    for _ in range(args.rounds):
        for name, (key, anchored) in MODES.items():
            with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
                rounds[name].append(measure(Path(tmp), key, anchored, args.appends, args.lines))
    results = {
        name: {m: statistics.median(r[m] for r in runs) for m in runs[0]}
        for name, runs in rounds.items()
    }
    base = results["unkeyed"]
    out = [
        "## Audit log modes",
        "",
        f"`benchmarks/bench_audit.py` ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} "
        f"cores, shared): fsyncs counted over {args.appends} appends (an append costs its "
        "fsyncs: the disk's latency, not the hashing), and the time to open (verify) a "
        f"{args.lines:,}-line log as a controller does at start, the median of "
        f"{args.rounds} rounds with the modes interleaved. Compare the ratios to unkeyed.",
        "",
        f"| mode | fsyncs per line | open a {args.lines:,}-line log | vs unkeyed |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        out.append(
            f"| {name} | {r['fsyncs']:.0f} | {r['open']:.2f} s | {r['open'] / base['open']:.2f}× |"
        )
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
