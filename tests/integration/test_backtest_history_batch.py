"""Backtest history for a fleet: apps with a region are read through the batch API, 50
at a time and a day per call, and get exactly the series the one-at-a-time read gives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.emulator.config_writer import policies_for
from controller.policy.schema import Policy
from controller.signals.azure_monitor import AzureMonitorSource
from tests.conftest import START, emulator_settings
from tests.scenarios import fleet_scenario, fleet_target

pytestmark = pytest.mark.anyio
APPS = 60


def app_policy_in_region(i: int) -> Policy:
    return app_policy(i, "eastus")


def app_policy(i: int, region: str | None) -> Policy:
    target = fleet_target(i, region)
    objective = {"comparison": "<", "for": "3m"}
    return Policy.model_validate(
        {
            "apiVersion": "remediator/v1",
            "kind": "Policy",
            "metadata": {"name": f"app-{i}"},
            "target": target,
            "objectives": [
                {
                    "name": "cpu",
                    "signal": {"metric": "CpuPercentage", "aggregation": "Average"},
                    "threshold": 70,
                    **objective,
                },
                {
                    "name": "memory",
                    "signal": {"metric": "MemoryPercentage", "aggregation": "Maximum"},
                    "threshold": 80,
                    **objective,
                },
            ],
        }
    )


async def test_a_fleet_history_is_a_few_batch_calls_with_the_same_series(tmp_path: Path) -> None:
    """60 apps × 2 objectives over two chunks of range: two chunks × two batches of at
    most 50 (both metrics in one query) — 4 calls — where one at a time takes 4 per app;
    the series are identical (checked on apps of both batches)."""
    demands = [round(0.05 * (i % 8 + 1), 2) for i in range(APPS)]
    end = START + timedelta(hours=2)
    clock = VirtualClock(end)
    scenario = fleet_scenario(tmp_path, demands)
    emulator = Emulator(scenario, now=clock.now)
    async with emulator.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:

            def metric_calls() -> int:
                return sum(1 for r in emulator.requests if "metrics" in r["path"].lower())

            source = AzureMonitorSource(clients, clock, history_chunk=timedelta(hours=1))
            batched = [
                (p.target, o) for p in map(app_policy_in_region, range(APPS)) for o in p.objectives
            ]
            before = metric_calls()
            history = await source.histories(batched, START, end)
            batch_calls = metric_calls() - before

            before = metric_calls()
            alone = {
                (p.target.resource_id, o.name): await source.history(p.target, o, START, end)
                for p in (app_policy(i, None) for i in (*range(4), *range(APPS - 4, APPS)))
                for o in p.objectives
            }
            single_calls = metric_calls() - before
    assert batch_calls == 2 * 2
    assert single_calls == 8 * 2 * 2
    for key, samples in alone.items():
        assert samples and history[key] == samples, key


async def test_chunks_meet_without_counting_a_bucket_twice(tmp_path: Path) -> None:
    """Azure answers the partial bucket at each end of a timespan. From a start 30 s past
    a minute, in 7-minute chunks, a Cosmos DB account's request count (a sum), its 429
    share and its RU consumption come out once per minute, the same through the batch
    API as one at a time, each minute's count as the emulator's model has it."""
    scenario = load_scenario("cosmos-throttling")
    start = scenario.start + timedelta(seconds=30)
    end = scenario.start + timedelta(minutes=40)
    clock = VirtualClock(end)
    emulator = Emulator(scenario, now=clock.now, wobble=0)
    async with emulator.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path)
        [raw] = policies_for(scenario, base_url)
        raw["objectives"].append(
            {
                "name": "requests",
                "signal": {"metric": "TotalRequests", "aggregation": "Count"},
                "comparison": "<",
                "threshold": 1e9,
            }
        )
        policy = Policy.model_validate(raw)
        alone = Policy.model_validate({**raw, "target": {**raw["target"], "region": None}})
        async with AzureClients(settings, make_credential("emulator")) as clients:
            source = AzureMonitorSource(clients, clock, history_chunk=timedelta(minutes=7))
            batched = await source.histories(
                [(policy.target, o) for o in policy.objectives], start, end
            )
            for objective in policy.objectives:
                one = await source.history(alone.target, objective, start, end)
                many = batched[(policy.target.resource_id, objective.name)]
                stamps = [s.ts for s in many]
                assert stamps == sorted(set(stamps)), objective.name
                assert stamps[0] == scenario.start  # the bucket holding the start
                assert many == one, objective.name
    counts = [s.value for s in batched[(policy.target.resource_id, "requests")]]
    assert max(c for c in counts if c is not None) <= 2 * min(c for c in counts if c)
