"""Audit startup: what a start costs with a long history, unrotated and rotated.

Generates a realistic history (``--targets`` apps over 10 subscriptions, two objectives
each: verdict changes, denials, intents and their results, verifications, escalations,
the odd interrupted intent; about 1.2 KB a line) of ``--mib`` MiB, written twice in a
temporary directory: as one file, and as the controller writes it with the default
rotation (64 MiB or a day, a snapshot at the head of each new file — through the same
functions the audit log uses), stopping once past the size asked for when the active
file is at its largest (the worst case for a start). Then, each in a fresh process, a
start: open the audit log (verify the chain and replay it, streaming) and take its
memory. Reported from this one run: wall time and peak memory (max RSS) of each, their
ratios, the lines each read, and a digest of the memory each rebuilt (everything but the
actions older than the longest budget window), which must match. The files are deleted
afterwards.

    .venv/bin/python benchmarks/bench_audit_startup.py [--mib 1024] [--targets 200] [--before]
        [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.audit.chain import GENESIS, seal, verify  # noqa: E402
from controller.audit.log import AuditLog, head_path  # noqa: E402
from controller.audit.replay import Replayed, fold, replay, snapshot_line  # noqa: E402
from controller.audit.rotation import Rotation, rotated  # noqa: E402
from controller.audit.snapshot import memory_json  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
SUBSCRIPTIONS = 10
ACTIONS = ("scaleOut", "scaleUp", "restartRevision")


def target(i: int) -> str:
    return (
        f"/subscriptions/00000000-0000-0000-0000-{i % SUBSCRIPTIONS:012d}/resourceGroups/"
        f"rg-bench-prod/providers/Microsoft.App/containerApps/app-{i:04d}"
    )


def verdicts(state: str, rng: random.Random) -> list[dict[str, Any]]:
    cpu = round(rng.uniform(75, 99) if state == "breach" else rng.uniform(20, 60), 2)
    memory = round(rng.uniform(30, 70), 2)
    return [
        {
            "objective": "cpu",
            "state": state,
            "value": cpu,
            "threshold": 70.0,
            "reason": f"{state}: {cpu:g} vs objective < 70 sustained over 3 × 60s",
            "worst": cpu,
        },
        {
            "objective": "memory",
            "state": "ok",
            "value": memory,
            "threshold": 80.0,
            "reason": f"ok: {memory:g} vs objective < 80",
            "worst": memory,
        },
    ]


def history(targets: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """An endless, realistic stream of audit records (unsealed), a second apart."""
    rng = random.Random(seed)
    now = START
    made = 0  # records so far: an intent's ``_ref``, which its result's ``intent`` names
    open_intents: dict[int, tuple[int, str, int]] = {}
    while True:
        now += timedelta(seconds=1)
        i = rng.randrange(targets)
        breach = rng.random() < 0.4
        state = "breach" if breach else "ok"
        action = ACTIONS[rng.randrange(len(ACTIONS))]
        step = ACTIONS.index(action)
        replicas = rng.randint(1, 9)
        base: dict[str, Any] = {
            "ts": now.isoformat().replace("+00:00", "Z"),
            "kind": "verdict",
            "policy": f"app-{i:04d}",
            "target": target(i),
            "verdict": state,
            "verdicts": verdicts(state, rng),
            "action": None,
            "params": {},
            "decision": None,
            "reason": "all objectives met" if not breach else "cpu in breach",
            "guard": None,
            "mode": "live",
            "outcome": None,
            "before": {},
            "after": {},
            "reconcile_id": f"{rng.getrandbits(48):012x}",
            "step": None,
            "intent": None,
            "verify_at": None,
            "efficacy": None,
            "breaker": None,
            "approval_id": None,
        }
        scale = {"minReplicas": replicas, "maxReplicas": 10}
        after = {"minReplicas": replicas + 1, "maxReplicas": 10}
        roll = rng.random()
        if i in open_intents and roll < 0.9:  # the result of the intent before
            intent, act, at_step = open_intents.pop(i)
            succeeded = rng.random() < 0.9
            base.update(
                kind="result",
                action=act,
                params=after,
                decision="allow",
                reason="guards passed",
                outcome="succeeded" if succeeded else "failed",
                before=scale,
                after=after if succeeded else scale,
                step=at_step,
                intent=intent,
                verify_at=(now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
                if succeeded
                else None,
                breaker={"consecutiveBad": 0, "openedAt": None, "trialRunning": False},
            )
        elif roll < 0.35:
            pass  # a verdict line: a state or the reason for doing nothing changed
        elif roll < 0.75:
            base.update(
                kind="decision",
                action=action,
                params=after,
                decision="deny",
                guard="cooldown",
                reason=f"cooldown: last action ({action}) 2m ago; cooldown is 5m",
                before=scale,
                step=step,
            )
        elif roll < 0.87 and i not in open_intents:
            base.update(
                kind="intent",
                action=action,
                params=after,
                decision="allow",
                reason="guards passed",
                before=scale,
                after=after,
                step=step,
            )
            base["_ref"] = made
            open_intents[i] = (made, action, step)
        elif roll < 0.97:
            efficacy = "improved" if rng.random() < 0.8 else "not-improved"
            base.update(
                kind="verification",
                action=action,
                step=step,
                efficacy=efficacy,
                reason=f"{action} {efficacy}: cpu 91.2 → 55.3",
                breaker={"consecutiveBad": 0, "openedAt": None, "trialRunning": False},
            )
        else:
            base.update(kind="escalation", reason="needs a human: cpu in breach; ladder exhausted")
        made += 1
        yield base


@dataclass
class Chain:
    """One audit file being written: its chain, and (rotating) its memory and limits."""

    path: Path
    rotation: Rotation | None = None
    seq: int = 0
    prev: str = GENESIS
    size: int = 0
    tail: int = 0
    started: datetime | None = None
    state: Replayed = field(default_factory=Replayed)
    rotations: int = 0
    intents: dict[int, int] = field(default_factory=dict)  # an intent's _ref → its seq here
    file: Any = None

    def __post_init__(self) -> None:
        self.file = self.path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        fields = {k: v for k, v in record.items() if k != "_ref"}
        if record["kind"] == "intent":
            self.intents[record["_ref"]] = self.seq + 1
        elif record["kind"] == "result":
            fields["intent"] = self.intents.pop(record["intent"])
        sealed = seal(fields, self.seq + 1, self.prev)
        text = json.dumps(sealed, ensure_ascii=False) + "\n"
        self.file.write(text)
        self.seq, self.prev = sealed["seq"], sealed["hash"]
        self.size += len(text.encode("utf-8"))
        if self.rotation is None:
            return
        fold(self.state, sealed)  # as AuditLog does with every line
        ts = datetime.fromisoformat(str(fields["ts"]).replace("Z", "+00:00"))
        self.started = self.started or ts
        self.tail += 1
        if self.rotation.due(self.size, self.started, ts, self.tail):
            self._rotate(str(fields["ts"]))

    def _rotate(self, ts: str) -> None:
        """As ``AuditLog._maybe_rotate`` (without an fsync per line): the older files are
        not kept, as a start never reads them."""
        assert self.rotation is not None
        snapshot = snapshot_line(self.state, ts, self.path.name, self.rotation.retention)
        sealed = seal(snapshot, self.seq + 1, self.prev)
        text = json.dumps(sealed, ensure_ascii=False) + "\n"
        self.file.close()
        self.path.unlink()
        self.file = self.path.open("w", encoding="utf-8")
        self.file.write(text)
        self.seq, self.prev = sealed["seq"], sealed["hash"]
        self.size, self.tail = len(text.encode("utf-8")), 0
        self.started = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        self.rotations += 1

    def close(self) -> None:
        self.file.close()
        head_path(self.path).write_text(json.dumps({"seq": self.seq, "hash": self.prev}))


def generate(folder: Path, mib: float, targets: int, rotation: Rotation) -> dict[str, Any]:
    """The same history twice: ``whole.jsonl`` unrotated, ``rotated.jsonl`` rotating."""
    whole = Chain(folder / "whole.jsonl")
    rotating = Chain(folder / "rotated.jsonl", rotation)
    limit = int(mib * 1024 * 1024)
    lines = 0
    for record in history(targets):
        whole.write(record)
        rotating.write(record)
        lines += 1
        # past the size asked for, stop when the active file is at its largest: the next
        # line or two would rotate it (the worst case for a start)
        if whole.size >= limit and rotating.size >= rotation.max_bytes - 4096:
            break
    whole.close()
    rotating.close()
    return {
        "lines": lines,
        "whole_bytes": whole.size,
        "active_bytes": rotating.size,
        "rotations": rotating.rotations,
    }


def digest(memory: Replayed, keep: timedelta) -> str:
    """The rebuilt memory, but for actions older than anything counts (``keep`` before
    the last one): rotated and unrotated must agree."""
    newest = max((r.ts for m in memory.memories.values() for r in m.history), default=START)
    body = {}
    for name, target_memory in sorted(memory.memories.items()):
        data = memory_json(target_memory)
        data["history"] = [h for h in data["history"] if h[0] >= (newest - keep).isoformat()]
        body[name] = data
    chain = ("seq", "prev", "hash")  # the two files' chains differ: snapshots take a seq
    intents = {
        name: [{k: v for k, v in i.items() if k not in chain} for i in waiting]
        for name, waiting in memory.open_intents.items()
    }
    text = json.dumps([body, intents, memory.fail_static], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure(path: Path) -> dict[str, Any]:
    """One start: open (verify + replay, streaming) and take the memory."""
    rotation = Rotation()
    started = time.perf_counter()
    log = AuditLog(path, rotation=rotation)
    log.open()
    memory = log.memory()
    wall = time.perf_counter() - started
    log.close()
    return {
        "wall": wall,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lines_read": log.lines,
        "targets": len(memory.memories),
        "open_intents": sum(len(v) for v in memory.open_intents.values()),
        "digest": digest(memory, rotation.retention.keep),
    }


def measure_before(path: Path) -> dict[str, Any]:
    """A start as it was before streaming: the whole file read, every line verified and
    kept, then the list replayed."""
    started = time.perf_counter()
    check = verify(path.read_text(encoding="utf-8").splitlines(keepends=True))
    memory = replay(check.records)
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lines_read": check.lines,
        "targets": len(memory.memories),
        "open_intents": sum(len(v) for v in memory.open_intents.values()),
        "digest": digest(memory, Rotation().retention.keep),
    }


def child(path: Path, before: bool = False) -> dict[str, Any]:
    """``measure`` in a fresh interpreter, so each peak memory is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--before-child" if before else "--child", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, default=1024)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--before-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--before",
        action="store_true",
        help="also start from the one file as before streaming (every line held: GBs)",
    )
    parser.add_argument(
        "--write", action="store_true", help="append the result to docs/benchmarks.md"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    if args.before_child:
        print(json.dumps(measure_before(args.before_child)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as directory:
        folder = Path(directory)
        started = time.perf_counter()
        made = generate(folder, args.mib, args.targets, Rotation())
        generated = time.perf_counter() - started
        assert not rotated(folder / "rotated.jsonl")
        whole = child(folder / "whole.jsonl")
        active = child(folder / "rotated.jsonl")
        before = child(folder / "whole.jsonl", before=True) if args.before else None
    assert whole["digest"] == active["digest"], (whole, active)
    assert before is None or before["digest"] == whole["digest"], (before, whole)
    mib = made["whole_bytes"] / 2**20
    lines = [
        f"## Audit startup: {mib:,.0f} MiB of history ({made['lines']:,} lines, "
        f"{args.targets} targets)",
        "",
        "`python benchmarks/bench_audit_startup.py"
        + (" --before" if args.before else "")
        + (f" --mib {args.mib:g}" if args.mib != 1024 else "")
        + (f" --targets {args.targets}" if args.targets != 200 else "")
        + f"`; generated in {generated:.0f} s in a temporary directory (deleted after); "
        "each start in a fresh process, one after the other in the same run.",
        "",
        "| measure | one unrotated file | rotated at 64 MiB (snapshot + tail) | ratio |",
        "|---|---|---|---|",
        f"| file read at start | {mib:,.0f} MiB | {made['active_bytes'] / 2**20:,.1f} MiB, "
        f"the largest it gets ({made['rotations']} rotations before it) | |",
        f"| lines read | {whole['lines_read']:,} | {active['lines_read']:,} | "
        f"{whole['lines_read'] / active['lines_read']:.1f}× |",
        f"| start (open + verify + replay) | {whole['wall']:.1f} s | {active['wall']:.2f} s | "
        f"**{whole['wall'] / active['wall']:.1f}× faster** |",
        f"| peak memory (max RSS) | {whole['peak_mib']:,.0f} MiB | {active['peak_mib']:,.0f} MiB"
        f" | {whole['peak_mib'] / active['peak_mib']:.1f}× |",
        f"| targets / open intents rebuilt | {whole['targets']} / {whole['open_intents']} | "
        f"{active['targets']} / {active['open_intents']} | |",
        f"| digest of the memory | `{whole['digest']}` | `{active['digest']}` | |",
        "",
    ]
    if before is not None:
        lines += [
            "The same unrotated file started as before streaming (the whole file read, "
            "every line verified and held, then replayed), in the same run: "
            f"{before['wall']:.1f} s and {before['peak_mib']:,.0f} MiB peak — streaming "
            f"starts {before['wall'] / whole['wall']:.1f}× faster in "
            f"{before['peak_mib'] / whole['peak_mib']:.1f}× less memory, and rotation "
            f"{before['wall'] / active['wall']:.1f}× faster.",
            "",
        ]
    print("\n".join(lines))
    if args.write:
        with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as out:
            out.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
