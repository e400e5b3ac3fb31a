"""Azure Monitor signals through the real query clients: batching, fallback, failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.model import Observation, Quality
from controller.policy.schema import Policy
from controller.signals.azure_monitor import AzureMonitorSource
from tests.conftest import APP_ID, START, emulator_settings, make_policy
from tests.scenarios import fleet_scenario

pytestmark = pytest.mark.anyio


def app_policy(i: int, region: str | None = "eastus") -> Policy:
    target = {"type": "containerApp", "resourceId": APP_ID.replace("agentstudio-api", f"app-{i}")}
    if region:
        target["region"] = region
    return make_policy(metadata={"name": f"app-{i}"}, target=target)


@pytest.fixture
async def fleet(
    tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[tuple[Emulator, AzureMonitorSource]]:
    demands = [round(0.05 * (i % 10 + 1), 2) for i in range(60)]
    emu = Emulator(fleet_scenario(tmp_path, demands), now=clock.now, wobble=0)
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:
            yield emu, AzureMonitorSource(clients, clock)


def metric_calls(emu: Emulator) -> tuple[list[int], int]:
    """(resource ids per batch call, smallest first: one read's calls are in flight
    together, in any order; single-resource calls)."""
    batches = sorted(
        len(r["body"]["resourceids"])
        for r in emu.requests
        if r["path"].endswith("metrics:getBatch")
    )
    singles = sum(
        1 for r in emu.requests if r["path"].endswith("/providers/Microsoft.Insights/metrics")
    )
    return batches, singles


async def test_sixty_targets_in_one_region_take_two_batch_calls(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock
) -> None:
    """Registered targets of one region and namespace are read 50 at a time, once per round."""
    emu, source = fleet
    policies = [app_policy(i) for i in range(60)]
    for p in policies:
        source.register(p.target, p.objectives)
    await clock.advance(600)
    values = {}
    for p in policies:
        observed = await source.observe(p.target, p.objectives, clock.now())
        values[p.name] = observed["cpu"]
    assert metric_calls(emu) == ([10, 50], 0)
    assert all(o.quality is Quality.GOOD for o in values.values())
    # app-3 has 0.2 cores of demand on one 0.5-core replica: 40 %
    assert values["app-3"].samples[-1].value == pytest.approx(40.0)
    assert values["app-0"].samples[-1].value == pytest.approx(10.0)


async def test_one_read_per_group_and_grain_however_the_passes_are_spread(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock
) -> None:
    """Sixty targets whose passes are spread over the minute (the loop's jitter) share
    one read of two calls; the next minute's bucket is read afresh, once."""
    emu, source = fleet
    policies = [app_policy(i) for i in range(60)]
    for p in policies:
        source.register(p.target, p.objectives)
    await clock.advance(300)  # 00:05:00, the start of a bucket
    for p in policies:  # one pass a second: 00:05:00 … 00:05:59
        await source.observe(p.target, p.objectives, clock.now())
        await clock.advance(59 / 59 if p is not policies[-1] else 0)
    assert metric_calls(emu) == ([10, 50], 0)
    await clock.advance(1)  # 00:06:00: a new bucket
    await source.observe(policies[0].target, policies[0].objectives, clock.now())
    assert metric_calls(emu) == ([10, 10, 50, 50], 0)


async def test_a_target_that_is_gone_is_no_longer_read(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock
) -> None:
    """Sixty registered, ten forgotten (deleted apps, a reload): the next read asks for
    fifty, in one call."""
    emu, source = fleet
    policies = [app_policy(i) for i in range(60)]
    for p in policies:
        source.register(p.target, p.objectives)
    for p in policies[50:]:
        source.unregister(p.target, p.objectives)
    await clock.advance(300)
    await source.observe(policies[0].target, policies[0].objectives, clock.now())
    assert metric_calls(emu) == ([50], 0)


async def test_a_failed_read_is_retried_within_the_bucket(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock
) -> None:
    """A failure is shared only briefly: a pass 30 s later, in the same bucket, reads again
    and gets the data."""
    emu, source = fleet
    policy = app_policy(1)
    await clock.advance(300)
    emu.set_fault("metrics-error", duration_s=20)
    first = await driven(source, policy, clock)
    assert first["cpu"].quality is Quality.ERROR
    await clock.advance(25)  # still 00:05, the failure no longer shared
    second = await source.observe(policy.target, policy.objectives, clock.now())
    assert second["cpu"].quality is Quality.GOOD


async def test_a_target_without_region_is_read_alone(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock
) -> None:
    """Without a region the batch API cannot serve; the per-resource API does."""
    emu, source = fleet
    policy = app_policy(3, region=None)
    await clock.advance(600)
    observed = await source.observe(policy.target, policy.objectives, clock.now())
    assert metric_calls(emu) == ([], 1)
    assert observed["cpu"].quality is Quality.GOOD
    assert observed["cpu"].samples[-1].value == pytest.approx(40.0)
    assert observed["cpu"].samples[-1].ts == START + timedelta(minutes=9)


@pytest.mark.parametrize(
    ("fault", "quality"),
    [
        ("metrics-error", Quality.ERROR),
        ("metrics-null", Quality.MISSING),
        ("metrics-missing", Quality.MISSING),
    ],
)
async def test_failures_become_quality_not_exceptions(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock, fault: str, quality: Quality
) -> None:
    """A failed or empty answer is an observation marked error or missing."""
    emu, source = fleet
    emu.set_fault(fault)
    for policy in (app_policy(1), app_policy(2, region=None)):
        observed = await driven(source, policy, clock)
        assert observed["cpu"].quality is quality
    reads = [r for r in emu.requests if "metrics" in r["path"].lower()]
    # a 500 is retried (three attempts in all, on the controller's clock); empty data is not
    assert len(reads) == (6 if fault == "metrics-error" else 2)


async def driven(
    source: AzureMonitorSource, policy: Policy, clock: VirtualClock
) -> dict[str, Observation]:
    """Observe while moving virtual time, so retry waits pass."""
    out: dict[str, Observation] = {}

    async def observe() -> None:
        out.update(await source.observe(policy.target, policy.objectives, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(observe)
        await clock.drive(
            clock.now() + timedelta(minutes=1), sleepers=1, stop_when=lambda: bool(out)
        )
    return out


async def test_a_partial_batch_failure_touches_only_the_failing_target(
    fleet: tuple[Emulator, AzureMonitorSource], clock: VirtualClock
) -> None:
    """One id in the batch that Azure cannot answer: that target is unknown, the rest good."""
    emu, source = fleet
    ghost = app_policy(99)  # not in the emulated subscription's resources
    policies = [app_policy(i) for i in range(3)] + [ghost]
    for p in policies:
        source.register(p.target, p.objectives)
    await clock.advance(600)
    qualities = {}
    for p in policies:
        observed = await source.observe(p.target, p.objectives, clock.now())
        qualities[p.name] = observed["cpu"].quality
    assert metric_calls(emu) == ([4], 0)  # one batch call carried all four
    assert qualities.pop("app-99") is Quality.MISSING
    assert set(qualities.values()) == {Quality.GOOD}
