"""Backtest speed: one million target-minutes (100 apps × 7 days at a one-minute grain)
replayed through the production reconcilers on a virtual clock.

Each app's CPU history has a 3-hour spike every 12 hours, staggered across the fleet so
the fail-static rule does not hold everyone still; the effect model lets scale-outs
bring CPU down. Reported: simulated target-minutes per wall second, simulated time per
wall second, peak memory (max RSS), and what the replay decided — counts, not timings,
are what a run can be compared on.

    .venv/bin/python benchmarks/bench_backtest.py [--apps 100] [--days 7] [--write]
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.backtest.engine import replay  # noqa: E402
from controller.backtest.history import History  # noqa: E402
from controller.model import ContainerSize, ResourceState  # noqa: E402
from controller.policy.schema import Policy  # noqa: E402
from controller.telemetry import configure_logging  # noqa: E402
from tests.conftest import BASE_POLICY  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)


def fleet(apps: int, minutes: int) -> tuple[list[Policy], History]:
    policies, history = [], History()
    for i in range(apps):
        data = copy.deepcopy(BASE_POLICY)
        data["metadata"]["name"] = f"app-{i:03d}"
        data["target"]["resourceId"] = data["target"]["resourceId"].replace(
            "agentstudio-api", f"app-{i:03d}"
        )
        policy = Policy.model_validate(data)
        policies.append(policy)
        offset = (i * 37) % 720  # stagger: a few apps spike at any one time
        for minute in range(minutes):
            spiking = (minute + offset) % 720 < 180
            history.add(
                policy.name, "cpu", START + timedelta(minutes=minute), 95.0 if spiking else 35.0
            )
        history.states[policy.name] = ResourceState(
            policy.target.resource_id, 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1", 1
        )
    return policies, history


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument(
        "--write", action="store_true", help="append the result to docs/benchmarks.md"
    )
    args = parser.parse_args()
    configure_logging("warning")
    minutes = int(args.days * 1440)
    policies, history = fleet(args.apps, minutes)
    end = START + timedelta(minutes=minutes)
    began = time.perf_counter()
    result = anyio.run(lambda: replay(policies, history, START, end))
    wall = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    target_minutes = args.apps * minutes
    actions = sum(sum(t.summary.actions.values()) for t in result.targets)
    denied = sum(sum(t.summary.denied.values()) for t in result.targets)
    lines = [
        f"## Backtest: {target_minutes:,} target-minutes "
        f"({args.apps} apps × {args.days:g} days, 1 min grain)",
        "",
        "The production reconcilers and guards on a virtual clock, the effect model on; "
        "`benchmarks/bench_backtest.py`.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| target-minutes per wall second | {target_minutes / wall:,.0f} |",
        f"| simulated time per wall second | {minutes / wall:,.0f} minutes of the whole fleet |",
        f"| wall time | {wall:.1f} s |",
        f"| peak memory (max RSS) | {peak_mib:,.0f} MiB |",
        f"| actions taken / denied | {actions:,} / {denied:,} |",
        "",
    ]
    print("\n".join(lines))
    if args.write:
        with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as out:
            out.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
