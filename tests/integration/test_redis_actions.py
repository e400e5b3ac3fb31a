"""The Redis actuator through the real SDK client against the emulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import anyio
import pytest

from controller.actions.redis import RedisActuator
from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.model import CacheSku, OutcomeKind, Proposal
from controller.policy.schema import Target
from tests.conftest import START, emulator_settings

pytestmark = pytest.mark.anyio
SCENARIO = load_scenario("redis-overload")
CACHE_ID = SCENARIO.caches[0].resource_id
TARGET = Target.model_validate({"type": "redisCache", "resourceId": CACHE_ID, "region": "eastus"})
LRO_POLLS = 2
C1 = {"sku": "Standard", "family": "C", "capacity": 1}
C2 = {"sku": "Standard", "family": "C", "capacity": 2}
C3 = {"sku": "Standard", "family": "C", "capacity": 3}


class Served(NamedTuple):
    emu: Emulator
    base: str  # the emulator's URL


@pytest.fixture
async def served(clock: VirtualClock) -> AsyncIterator[Served]:
    """The redis-overload cache, six minutes in (95 % load on a C1)."""
    await clock.advance(6 * 60)
    emu = Emulator(SCENARIO, now=clock.now, lro_polls=LRO_POLLS)
    async with emu.serve(host="127.0.0.1", port=0) as base_url:
        yield Served(emu, base_url)


@pytest.fixture
async def actuator(
    served: Served, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[RedisActuator]:
    settings = emulator_settings(served.base, tmp_path)
    async with AzureClients(settings, make_credential("emulator")) as clients:
        yield RedisActuator(clients, clock)


def scale(after: dict[str, Any], before: dict[str, Any] | None = None) -> Proposal:
    return Proposal("scaleCache", 0, after, before or C1, after, "test")


def writes_of(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["method"] in ("PATCH", "POST", "PUT")]


def cache_state(emu: Emulator) -> dict[str, Any]:
    state: dict[str, Any] = emu.state()["resources"][CACHE_ID]
    return state


async def raw(base: str, method: str, body: Any = None, suffix: str = "") -> dict[str, Any]:
    """A request to the cache that does not go through the actuator (someone else's)."""
    url = f"{base}{CACHE_ID}{suffix}?api-version=2024-11-01"
    auth = {"Authorization": "Bearer someone-else"}
    async with (
        aiohttp.ClientSession(headers=auth) as session,
        session.request(method, url, json=body) as response,
    ):
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def test_read_reports_the_sku_and_state(actuator: RedisActuator, served: Served) -> None:
    state = await actuator.read(TARGET)
    assert state.resource_id == CACHE_ID
    assert state.cache == CacheSku("Standard", "C", 1)
    assert state.cache_state == "Succeeded"
    assert state.last_modified == START  # created at the scenario's start, not changed since
    assert dict(state.tags) == {}
    assert served.emu.writes == 0


async def settled(served: Served) -> None:
    """Read the cache until its scale has landed (as later passes would)."""
    for _ in range(LRO_POLLS + 1):
        await raw(served.base, "GET")


async def test_scale_sends_only_the_sku_and_ends_once_accepted(
    actuator: RedisActuator, served: Served, clock: VirtualClock
) -> None:
    """One PATCH of ``properties.sku`` alone: the hardened settings are not resent. The
    action ends when Azure has accepted it (a real scale takes longer than an action may
    hold the loop); the cache reads Scaling, then the new size."""
    emu = served.emu
    outcome = await actuator.scale_cache(TARGET, scale(C2))
    assert outcome.kind is OutcomeKind.SUCCEEDED and not outcome.busy
    assert outcome.before == C1 and "Scaling" in outcome.detail
    [write] = writes_of(emu)
    assert write["method"] == "PATCH"
    assert write["body"] == {
        "properties": {"sku": {"name": "Standard", "family": "C", "capacity": 2}}
    }
    after_patch = emu.requests[emu.requests.index(write) + 1 :]
    assert len(after_patch) == 1  # the read-back only: no waiting on the operation
    await settled(served)
    assert (cache_state(emu)["sku"]["capacity"], cache_state(emu)["provisioningState"]) == (
        2,
        "Succeeded",
    )
    body = await raw(served.base, "GET")
    assert body["properties"]["publicNetworkAccess"] == "Disabled"
    assert body["properties"]["disableAccessKeyAuthentication"] is True
    assert (await actuator.read(TARGET)).last_modified == clock.now()
    await clock.advance(2 * 60)
    assert cache_state(emu)["serverLoad"] == 47.5


async def test_a_repeated_scale_writes_nothing(actuator: RedisActuator, served: Served) -> None:
    await actuator.scale_cache(TARGET, scale(C2))
    await settled(served)
    again = await actuator.scale_cache(TARGET, scale(C2))
    assert again.kind is OutcomeKind.SUCCEEDED and again.detail == "already as proposed"
    assert again.before == again.after == C2
    assert served.emu.writes == 1


async def test_a_scale_up_already_overtaken_writes_nothing(
    actuator: RedisActuator, served: Served
) -> None:
    """Someone scaled to C3 meanwhile: the C1 → C2 proposal is already more than met."""
    await raw(
        served.base,
        "PATCH",
        {"properties": {"sku": {"name": "Standard", "family": "C", "capacity": 3}}},
    )
    for _ in range(LRO_POLLS + 1):
        await raw(served.base, "GET")
    outcome = await actuator.scale_cache(TARGET, scale(C2, before=C1))
    assert outcome.detail == "already as proposed" and outcome.after == C3
    assert len(writes_of(served.emu)) == 1  # theirs


async def test_a_scale_down_is_written_even_though_the_cache_is_larger(
    actuator: RedisActuator, served: Served
) -> None:
    await actuator.scale_cache(TARGET, scale(C2))
    await settled(served)
    down = await actuator.scale_cache(TARGET, scale(C1, before=C2))
    assert (down.kind, down.before) == (OutcomeKind.SUCCEEDED, C2)
    assert writes_of(served.emu)[-1]["body"]["properties"]["sku"]["capacity"] == 1


async def test_a_scale_while_the_cache_is_scaling_is_busy_not_failed(
    actuator: RedisActuator, served: Served
) -> None:
    """Someone else's scale is running: nothing is written; the next pass tries again."""
    await raw(
        served.base,
        "PATCH",
        {"properties": {"sku": {"name": "Standard", "family": "C", "capacity": 3}}},
    )
    outcome = await actuator.scale_cache(TARGET, scale(C2))
    assert outcome.kind is OutcomeKind.FAILED and outcome.busy
    assert "Scaling" in outcome.detail
    assert outcome.before == outcome.after == C1
    rebooted = await actuator.reboot_cache(
        TARGET, Proposal("rebootCache", 0, {"rebootType": "AllNodes"}, {}, {}, "t")
    )
    assert rebooted.busy
    assert len(writes_of(served.emu)) == 1  # only theirs
    assert cache_state(served.emu)["reboots"] == 0


async def test_a_conflict_at_write_time_is_busy(
    actuator: RedisActuator, served: Served, clock: VirtualClock
) -> None:
    """The read saw Succeeded, but the write is refused 409 (the service became busy
    in between): retried on the clock, then reported busy."""
    served.emu.set_fault("arm-busy", duration_s=600)
    outcomes: list[Any] = []

    async def act() -> None:
        outcomes.append(await actuator.scale_cache(TARGET, scale(C2)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(act)
        await clock.drive(
            clock.now() + timedelta(seconds=30), sleepers=1, stop_when=lambda: bool(outcomes)
        )
    [outcome] = outcomes
    assert outcome.kind is OutcomeKind.FAILED and outcome.busy
    assert "RetryableErrorDueToAnotherOperation" in outcome.detail
    assert len(writes_of(served.emu)) == 3 and served.emu.writes == 0


async def test_a_scale_that_fails_later_is_seen_by_a_later_read(
    actuator: RedisActuator, served: Served
) -> None:
    """Accepted, then failed by the service: the action reported only the acceptance; the
    next read shows the old size, and the verification judges it (not improved)."""
    served.emu.set_fault("lro-fail")
    accepted = await actuator.scale_cache(TARGET, scale(C2))
    assert accepted.kind is OutcomeKind.SUCCEEDED and "Scaling" in accepted.detail
    await settled(served)
    state = await actuator.read(TARGET)
    assert state.cache is not None and state.cache.capacity == 1


async def test_reboot_posts_once_with_the_reboot_type(
    actuator: RedisActuator, served: Served
) -> None:
    emu = served.emu
    outcome = await actuator.reboot_cache(
        TARGET, Proposal("rebootCache", 0, {"rebootType": "AllNodes"}, {}, {}, "test")
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.before == {"rebootType": "AllNodes"}
    assert outcome.after == {"rebootType": "AllNodes", "rebooted": True}
    assert outcome.detail == "reboot operation enqueued"
    [write] = writes_of(emu)
    assert write["path"].endswith("/forceReboot")
    assert write["body"] == {"rebootType": "AllNodes"}
    assert cache_state(emu)["reboots"] == 1


async def test_reboot_of_one_shard_sends_the_shard(actuator: RedisActuator, served: Served) -> None:
    params = {"rebootType": "PrimaryNode", "shardId": 0}
    outcome = await actuator.reboot_cache(TARGET, Proposal("rebootCache", 0, params, {}, {}, "t"))
    assert outcome.after == {**params, "rebooted": True}
    assert writes_of(served.emu)[0]["body"] == params
