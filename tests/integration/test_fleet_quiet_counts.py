"""A quiet fleet's Azure calls: batched metrics reads only, no ARM read (the fleet
benchmark's counts, small enough for the suite; its cost figures stay in benchmarks/)."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from benchmarks.bench_controller import START, fleet_policy
from controller.audit.log import MemoryAudit
from controller.clock import VirtualClock
from controller.config import load_settings
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from tests.scenarios import fleet_scenario

pytestmark = pytest.mark.anyio
TARGETS, MINUTES = 20, 4


async def test_a_quiet_minute_reads_metrics_in_batches_and_arm_not_at_all(tmp_path: Path) -> None:
    clock = VirtualClock(START)
    emulator = Emulator(fleet_scenario(tmp_path, [0.15] * TARGETS), now=clock.now)
    async with emulator.serve() as base_url:
        settings = load_settings(
            None,
            environ={},
            overrides={
                "credential": "emulator",
                "cloud": "custom",
                "armEndpoint": base_url,
                "metricsEndpoint": base_url,
                "listen": "off",
                "interval": "60s",
            },
        )
        loaded = [LoadedPolicy(fleet_policy(i, "eastus"), "t", 1) for i in range(TARGETS)]
        async with (
            open_runtime(
                settings, clock=clock, policies=loaded, audit=MemoryAudit(), rng=random.Random(1)
            ) as runtime,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(runtime.loop.run)
            await clock.drive(START + timedelta(minutes=MINUTES), sleepers=TARGETS)
            tg.cancel_scope.cancel()
    paths = [(r["method"], r["path"]) for r in emulator.requests]
    batches = [p for m, p in paths if p.endswith("metrics:getBatch")]
    assert [p for m, p in paths if "/Microsoft.App/" in p] == []  # no ARM read, no write
    assert [p for m, p in paths if p.endswith("/providers/Microsoft.Insights/metrics")] == []
    # ⌈20/50⌉ = 1 call per minute's bucket (the first minute's bucket and the last, partly)
    assert 0 < len(batches) <= MINUTES + 1
