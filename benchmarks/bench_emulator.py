"""What one emulator request costs as the estate grows: 2,000 against 10,000 Container Apps.

For each estate, over real HTTP on one machine: an ARM GET of one app, a metrics batch of
50 ids, a resource group GET, and Resource Graph pages of 1,000 rows (the first page,
which evaluates the query over the subscription, and the pages its ``$skipToken`` leads
to). Each figure is the median of ``--rounds`` requests; the estates are measured in the
same run, so the ratio is what matters (the estate is 5× larger): ~1× means the request
costs its rows, not the estate. Prints a Markdown section (``--write docs/benchmarks.md``
replaces it there).

    .venv/bin/python benchmarks/bench_emulator.py [--rounds 20] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from controller.emulator import Emulator
from controller.emulator.scenario import parse_scenario

sys.path.insert(0, str(Path(__file__).parents[1]))
from benchmarks.sections import replace_sections

SUB = "sub-1"
ESTATE = """\
name: estate
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: sub-1
resources:
  - type: containerApp
    count: {count}
    name: "app-{{i:05d}}"
    resourceGroup: rg-a
    location: eastus
    containers: [{{name: c, image: i:1, cpu: 0.5, memory: 1Gi}}]
    workload: {{cpuDemandCores: 0.1, baseMemoryMiB: 100}}
    tags: {{remediator/policy: api}}
    vary:
      - {{every: 2, resourceGroup: rg-b, location: westeurope}}
"""
HEADING = "Emulator requests: 2,000 against 10,000 Container Apps"


def app_id(i: int) -> str:
    rg = "rg-b" if i % 2 == 0 else "rg-a"
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/" + (
        f"app-{i:05d}"
    )


async def median_ms(rounds: int, call: Callable[[], Awaitable[None]]) -> float:
    await call()  # warm
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def measure(count: int, rounds: int) -> dict[str, float]:
    scenario = parse_scenario(ESTATE.format(count=count))
    emu = Emulator(scenario, now=lambda: scenario.start, graph_quota=None)
    auth = {"Authorization": "Bearer bench"}
    query = (
        "Resources | where tags['remediator/policy'] =~ 'api' | project id, name | order by id asc"
    )
    graph_body: dict[str, Any] = {"subscriptions": [SUB], "query": query}
    async with emu.serve() as base, aiohttp.ClientSession(base_url=base, headers=auth) as s:

        async def arm_get() -> None:
            async with s.get(app_id(count // 2), params={"api-version": "2025-07-01"}) as r:
                assert r.status == 200
                await r.read()

        async def group_get() -> None:
            url = f"/subscriptions/{SUB}/resourceGroups/rg-a"
            async with s.get(url, params={"api-version": "2025-07-01"}) as r:
                assert r.status == 200
                await r.read()

        ids = [app_id(i) for i in range(count - 49, count + 1)]

        async def batch() -> None:
            async with s.post(
                f"/subscriptions/{SUB}/metrics:getBatch",
                params={"metricnames": "CpuPercentage", "api-version": "2024-02-01"},
                json={"resourceids": ids},
            ) as r:
                assert r.status == 200
                await r.read()

        async def page(options: dict[str, Any]) -> dict[str, Any]:
            url = "/providers/Microsoft.ResourceGraph/resources"
            body = {**graph_body, "options": options}
            async with s.post(url, params={"api-version": "2022-10-01"}, json=body) as r:
                assert r.status == 200
                answer: dict[str, Any] = await r.json()
                return answer

        first = await page({"$top": 1000})  # the controller's page (100 without $top)
        assert first["count"] == 1000 and first["totalRecords"] == count
        token = first["$skipToken"]

        async def first_page() -> None:
            await page({"$top": 1000})

        async def next_page() -> None:
            answer = await page({"$skipToken": token, "$top": 1000})
            assert answer["count"] == 1000

        return {
            "ARM GET of one app": await median_ms(rounds, arm_get),
            "resource group GET": await median_ms(rounds, group_get),
            "metrics batch of 50 ids": await median_ms(rounds, batch),
            "Resource Graph: a page of 1,000 by $skipToken": await median_ms(rounds, next_page),
            "Resource Graph: the first page (evaluates the query)": await median_ms(
                max(rounds // 4, 3), first_page
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    small = asyncio.run(measure(2_000, args.rounds))
    large = asyncio.run(measure(10_000, args.rounds))
    lines = [
        f"`benchmarks/bench_emulator.py` ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} "
        f"cores, shared): the median of {args.rounds} requests over HTTP, both estates in "
        "one run; the estate is 5× larger. A ratio near 1× means the request costs its "
        "rows, not the estate; the first Resource Graph page evaluates the query over the "
        "whole subscription (it must, to count `totalRecords`), so it grows with the "
        "estate, and the pages its `$skipToken` leads to are slices of that result.",
        "",
        "| request | 2,000 apps | 10,000 apps | ratio |",
        "|---|---|---|---|",
    ]
    for name, ms in small.items():
        lines.append(f"| {name} | {ms:.1f} ms | {large[name]:.1f} ms | {large[name] / ms:.1f}× |")
    sys.stdout.write(f"## {HEADING}\n\n" + "\n".join(lines) + "\n")
    if args.write:
        replace_sections(args.write, {HEADING: lines})


if __name__ == "__main__":
    main()
