"""Backtest speed: one million target-minutes (100 apps × 7 days at a one-minute grain)
replayed through the production reconcilers.

Each app has two objectives (CPU < 70 %, memory < 80 %), a scale-out/scale-up ladder and
a step back to one replica; the apps are spread over 10 subscriptions (budgets are per
subscription). Its CPU idles at 25 % with a 3-hour spike to 95 % every 12
hours, staggered across the fleet so fail static does not hold everyone still: every
spike is a breach, a scale-out, a verification, and later a step back.

The replay runs twice, each in a fresh process: as the command runs it (quiet passes
accounted for without running them) and with every pass run in full. Reported, from
this one run: target-minutes per wall second for each and their ratio, peak memory
(max RSS) of each, how many passes ran in full, and a digest of everything each
decided and charted, which must match.

    .venv/bin/python benchmarks/bench_backtest.py [--apps 100] [--days 7] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.backtest.engine import replay  # noqa: E402
from controller.backtest.history import History  # noqa: E402
from controller.backtest.model import Backtest  # noqa: E402
from controller.model import ContainerSize, ResourceState  # noqa: E402
from controller.policy.schema import Policy  # noqa: E402
from controller.telemetry import configure_logging  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
SUBSCRIPTIONS = 10  # the apps spread over them, as their action budgets are per subscription


def policy(name: str, subscription: str) -> Policy:
    return Policy.model_validate(
        {
            "apiVersion": "remediator/v1",
            "kind": "Policy",
            "metadata": {"name": name},
            "target": {
                "type": "containerApp",
                "resourceId": f"{subscription}/resourceGroups/rg-bench/providers/"
                f"Microsoft.App/containerApps/{name}",
            },
            "objectives": [
                {
                    "name": "cpu",
                    "signal": {"metric": "CpuPercentage", "aggregation": "Average", "grain": "1m"},
                    "comparison": "<",
                    "threshold": 70,
                    "clear": 60,
                    "for": "3m",
                },
                {
                    "name": "memory",
                    "signal": {
                        "metric": "MemoryPercentage",
                        "aggregation": "Average",
                        "grain": "1m",
                    },
                    "comparison": "<",
                    "threshold": 80,
                    "for": "5m",
                },
            ],
            "remediation": [
                {"scaleOut": {"step": 1, "maxReplicas": 4}},
                {"scaleUp": {"maxCpu": 2.0}},
            ],
            "guards": {"cooldown": "5m", "maxActionsPerHour": 4, "bounds": {"maxReplicas": 6}},
            "stepBack": {"baseline": {"minReplicas": 1, "cpu": 0.5}, "stableFor": "30m"},
        }
    )


def fleet(apps: int, minutes: int) -> tuple[list[Policy], History]:
    policies, history = [], History()
    for i in range(apps):
        app = policy(
            f"app-{i:03d}", f"/subscriptions/{i % SUBSCRIPTIONS:08d}-0000-0000-0000-000000000000"
        )
        policies.append(app)
        offset = (i * 37) % 720  # stagger: a few apps spike at any one time
        for minute in range(minutes):
            ts = START + timedelta(minutes=minute)
            spiking = (minute + offset) % 720 < 180
            history.add(app.name, "cpu", ts, 95.0 if spiking else 25.0)
            history.add(app.name, "memory", ts, 40.0)
        history.states[app.name] = ResourceState(
            app.target.resource_id, 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1", 1
        )
    return policies, history


def digest(result: Backtest) -> str:
    """Everything a backtest decided and charted, hashed: markers, summaries, points."""
    hashed = hashlib.sha256()
    for target in result.targets:
        head = [target.policy, [asdict(m) for m in target.markers], asdict(target.summary)]
        hashed.update(json.dumps(head, default=str, sort_keys=True).encode())
        for objective in target.objectives:
            hashed.update(
                json.dumps([objective.name, list(objective.points)], default=str).encode()
            )
            hashed.update(json.dumps(objective.breaches, default=str).encode())
    return hashed.hexdigest()[:16]


def measure(apps: int, days: float, quiet: bool) -> dict[str, Any]:
    """One replay in this process: wall time, peak memory, counts, digest."""
    configure_logging("warning")
    minutes = int(days * 1440)
    policies, history = fleet(apps, minutes)
    end = START + timedelta(minutes=minutes)
    box: list[Backtest] = []

    async def run() -> None:  # the result is kept out of the event loop's task (its repr)
        box.append(await replay(policies, history, START, end, quiet=quiet))

    began = time.perf_counter()
    anyio.run(run)
    wall = time.perf_counter() - began
    result = box[0]
    actions: dict[str, int] = {}
    for target in result.targets:
        for action, count in target.summary.actions.items():
            actions[action] = actions.get(action, 0) + count
    return {
        "wall": wall,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "passes": result.passes,
        "quiet": result.quiet_passes,
        "actions": actions,
        "denied": sum(sum(t.summary.denied.values()) for t in result.targets),
        "digest": digest(result),
    }


def child(apps: int, days: float, quiet: bool) -> dict[str, Any]:
    """``measure`` in a fresh interpreter, so each peak memory is its own."""
    argv = [sys.executable, __file__, "--apps", str(apps), "--days", str(days), "--child"]
    out = subprocess.run(
        [*argv, "quiet" if quiet else "full"], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--child", choices=("quiet", "full"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--write", action="store_true", help="append the result to docs/benchmarks.md"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.apps, args.days, args.child == "quiet")))
        return
    fast = child(args.apps, args.days, quiet=True)
    full = child(args.apps, args.days, quiet=False)
    minutes = int(args.days * 1440)
    target_minutes = args.apps * minutes
    passes = fast["passes"] + fast["quiet"]
    same = "identical" if fast["digest"] == full["digest"] else "DIFFERENT"
    lines = [
        f"## Backtest: {target_minutes:,} target-minutes "
        f"({args.apps} apps × {args.days:g} days, 1 min grain)",
        "",
        "Two objectives per app, a scale-out/scale-up ladder and a step back; CPU idles at "
        "25 % with a 3-hour spike to 95 % every 12 hours. `benchmarks/bench_backtest.py`; "
        "each mode in a fresh process, the same run.",
        "",
        "| measure | as `remediator backtest` runs | every pass in full |",
        "|---|---|---|",
        f"| wall time | {fast['wall']:.1f} s | {full['wall']:.1f} s |",
        f"| target-minutes per wall second | {target_minutes / fast['wall']:,.0f} "
        f"| {target_minutes / full['wall']:,.0f} |",
        f"| peak memory (max RSS) | {fast['peak_mib']:,.0f} MiB | {full['peak_mib']:,.0f} MiB |",
        f"| passes run in full | {fast['passes']:,} of {passes:,} "
        f"| {full['passes']:,} of {passes:,} |",
        f"| actions taken / denied | {fast['actions']} / {fast['denied']:,} "
        f"| {full['actions']} / {full['denied']:,} |",
        f"| digest of decisions and charts | `{fast['digest']}` | `{full['digest']}` |",
        "",
        f"Quiet passes make the replay **{full['wall'] / fast['wall']:.1f}× faster**, "
        f"with {same} decisions and charts.",
        "",
    ]
    print("\n".join(lines))
    if args.write:
        with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as out:
            out.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
