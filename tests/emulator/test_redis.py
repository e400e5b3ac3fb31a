"""Azure Cache for Redis through the real SDK: shapes as in the REST examples, the scaling
rules the service enforces, the Scaling → Succeeded LRO, reboots, and the metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.monitor.aio import MonitorManagementClient
from azure.mgmt.redis.aio import RedisManagementClient
from azure.mgmt.redis.models import RedisRebootParameters, RedisUpdateParameters, Sku
from azure.monitor.querymetrics.aio import MetricsClient

from controller.azure.clients import AllowHttpPolicy
from controller.azure.credentials import EmulatorCredential
from controller.emulator import Emulator, ScenarioError, load_scenario
from controller.emulator.scenario import parse_scenario

from .support import AUTH, START, SUB, ManualClock, covers, shape

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).parents[1] / "fixtures" / "azure-examples" / "redis"
RG, NAME = "rg-agentstudio-prod", "redis-agentstudio-prod"
SCENARIO = load_scenario("redis-overload")
CACHE_ID = SCENARIO.caches[0].resource_id
API = {"api-version": "2024-11-01"}
LRO_POLLS = 2
C2 = {"name": "Standard", "family": "C", "capacity": 2}

# Three more caches, one per tier, for the tier-change rules.
TIERS_YAML = f"""
name: redis-tiers
start: "2026-01-01T00:00:00Z"
duration: 10m
subscription: {SUB}
resources:
  - {{type: redisCache, name: basic, resourceGroup: {RG}, location: eastus,
     sku: {{name: Basic, family: C, capacity: 1}}, workload: {{clients: 10}}}}
  - {{type: redisCache, name: standard, resourceGroup: {RG}, location: eastus,
     sku: {{name: Standard, family: C, capacity: 1}}, workload: {{clients: 10}}}}
  - {{type: redisCache, name: premium, resourceGroup: {RG}, location: eastus,
     sku: {{name: Premium, family: P, capacity: 1}}, workload: {{clients: 10}}}}
timeline:
  - {{at: 1m, resource: standard, clients: 20, loadPerClient: 2, datasetMiB: 512}}
"""


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return loaded


class Redis(NamedTuple):
    emu: Emulator
    client: RedisManagementClient
    clock: ManualClock
    session: aiohttp.ClientSession  # raw HTTP, for what the SDK would not send
    base: str


def _client(base: str) -> RedisManagementClient:
    return RedisManagementClient(
        EmulatorCredential(),
        SUB,
        base_url=base,
        retry_total=0,
        per_call_policies=[AllowHttpPolicy()],
        polling_interval=0,
    )


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """The redis-overload cache two minutes into its overload (95 % on a C1)."""
    clock = ManualClock(START + timedelta(minutes=6))
    emu = Emulator(SCENARIO, now=clock.now, wobble=0, lro_polls=LRO_POLLS)
    async with (
        emu.serve() as base,
        _client(base) as client,
        aiohttp.ClientSession(base_url=base, headers=AUTH) as session,
    ):
        yield Redis(emu, client, clock, session, base)


@pytest.fixture
async def tiers() -> AsyncIterator[tuple[Emulator, aiohttp.ClientSession]]:
    clock = ManualClock(START + timedelta(minutes=3))
    emu = Emulator(parse_scenario(TIERS_YAML), now=clock.now, wobble=0, lro_polls=0)
    async with (
        emu.serve() as base,
        aiohttp.ClientSession(base_url=base, headers=AUTH) as session,
    ):
        yield emu, session


def cache_path(name: str = NAME) -> str:
    # the SDK's casing: ARM paths are case-insensitive
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Cache/redis/{name}"


async def patch(session: aiohttp.ClientSession, body: Any, name: str = NAME) -> tuple[int, Any]:
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    async with session.patch(cache_path(name), params=API, data=data, headers=headers) as r:
        return r.status, await r.json()


def patches(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["method"] == "PATCH"]


# -- GET -----------------------------------------------------------------------------------


async def test_get_has_the_shape_of_the_rest_example_and_no_keys(redis: Redis) -> None:
    emu, client = redis.emu, redis.client
    raw: list[Any] = []

    def keep(response: Any, model: Any, _: Any) -> Any:
        raw.append(response.http_response.json())
        return model

    cache = await client.redis.get(RG, NAME, cls=keep)
    want = example("RedisCacheGet.json")["responses"]["200"]["body"]
    # served as empty lists (nothing linked), so there is no element type to compare
    for absent in ("linkedServers", "privateEndpointConnections"):
        assert raw[0]["properties"][absent] == []
        del want["properties"][absent]
    assert covers(shape(raw[0]), shape(want)) == []
    assert "accessKeys" not in raw[0]["properties"]
    assert raw[0]["id"] == CACHE_ID and raw[0]["type"] == "Microsoft.Cache/Redis"
    assert cache.sku.as_dict() == {"name": "Standard", "family": "C", "capacity": 1}
    assert (cache.provisioning_state, cache.host_name) == (
        "Succeeded",
        f"{NAME}.redis.cache.windows.net",
    )
    # the scenario's hardened settings
    assert (cache.public_network_access, cache.disable_access_key_authentication) == (
        "Disabled",
        True,
    )
    assert cache.redis_configuration is not None
    assert cache.redis_configuration.maxclients == "1000"
    assert len(cache.instances or []) == 2  # Standard: a primary and a replica
    assert emu.writes == 0


async def test_an_unknown_cache_is_404(redis: Redis) -> None:
    with pytest.raises(HttpResponseError) as raised:
        await redis.client.redis.get(RG, "nope")
    assert raised.value.status_code == 404


# -- scaling -------------------------------------------------------------------------------


async def test_a_dict_scale_is_scaling_then_lands_after_the_polls_and_halves_the_load(
    redis: Redis,
) -> None:
    """C1 → C2: 200 Scaling, the SDK reads the cache until Succeeded; load 95 → 47.5 %."""
    emu, client, clock = redis.emu, redis.client, redis.clock
    before = emu.state()["resources"][CACHE_ID]
    assert (before["serverLoad"], before["errors"]) == (95.0, 19.0)
    poller = await client.redis.begin_update(RG, NAME, {"sku": C2})
    assert emu.state()["resources"][CACHE_ID]["provisioningState"] == "Scaling"
    assert emu.state()["resources"][CACHE_ID]["sku"]["capacity"] == 1  # not yet
    result = await poller.result()
    assert result.provisioning_state == "Succeeded" and result.sku.capacity == 2
    [sent] = patches(emu)
    assert sent["body"] == {"properties": {"sku": C2}}  # nothing but the sku
    polls = [r for r in emu.requests[1:] if r["method"] == "GET"]
    assert len(polls) == LRO_POLLS + 1  # Scaling, Scaling, Succeeded
    assert result.public_network_access == "Disabled"  # untouched: only the sku was sent
    assert emu.writes == 1
    clock.advance(minutes=2)
    after = emu.state()["resources"][CACHE_ID]
    assert after["sku"] == C2 and after["provisioningState"] == "Succeeded"
    assert (after["serverLoad"], after["errors"]) == (47.5, 0.0)
    assert after["usedMemoryPercentage"] == pytest.approx(300 / 2560 * 100, abs=0.01)


async def test_the_patch_answer_is_200_scaling_with_the_body(redis: Redis) -> None:
    emu, session = redis.emu, redis.session
    status, body = await patch(session, {"properties": {"sku": C2}})
    assert status == 200
    assert body["properties"]["provisioningState"] == "Scaling"
    assert body["properties"]["sku"]["capacity"] == 1  # the SKU changes when the scale lands
    assert "accessKeys" not in body["properties"]
    assert emu.writes == 1


async def test_a_patch_merges_only_the_fields_it_sends(redis: Redis) -> None:
    """The SDK model's defaults would reopen the hardened cache; a flag alone is no scale."""
    emu, client = redis.emu, redis.client
    model = RedisUpdateParameters(sku=Sku(name="Standard", family="C", capacity=1))
    reopened = await (await client.redis.begin_update(RG, NAME, model)).result()
    assert patches(emu)[0]["body"]["properties"]["publicNetworkAccess"] == "Enabled"
    assert (reopened.public_network_access, reopened.disable_access_key_authentication) == (
        "Enabled",
        False,
    )
    status, body = await patch(redis.session, {"properties": {"enableNonSslPort": True}})
    assert status == 200
    props = body["properties"]
    assert (props["enableNonSslPort"], props["publicNetworkAccess"]) == (True, "Enabled")
    assert props["provisioningState"] == "Succeeded"  # same SKU: nothing to scale
    assert props["sku"]["capacity"] == 1
    assert emu.writes == 2


@pytest.mark.parametrize(
    ("cache", "body", "code", "message"),
    [
        (
            "standard",
            {"properties": {"sku": {"name": "Basic", "family": "C", "capacity": 1}}},
            "BadRequest",
            "down to Basic",
        ),
        (
            "premium",
            {"properties": {"sku": {"name": "Standard", "family": "C", "capacity": 6}}},
            "BadRequest",
            "down to Standard",
        ),
        (
            "basic",
            {"properties": {"sku": {"name": "Premium", "family": "P", "capacity": 1}}},
            "BadRequest",
            "Standard first",
        ),
        (
            "basic",
            {"properties": {"sku": {"name": "Standard", "family": "C", "capacity": 2}}},
            "BadRequest",
            "not both",
        ),
        (
            "standard",
            {"properties": {"sku": {"name": "Standard", "family": "C", "capacity": 0}}},
            "BadRequest",
            "C0",
        ),
        (
            "standard",
            {"properties": {"sku": {"name": "Standard", "family": "C", "capacity": 7}}},
            "BadRequest",
            "0 to 6",
        ),
        (
            "premium",
            {"properties": {"sku": {"name": "Premium", "family": "P", "capacity": 6}}},
            "BadRequest",
            "1 to 5",
        ),
        (
            "standard",
            {"properties": {"sku": {"name": "Premium", "family": "C", "capacity": 1}}},
            "BadRequest",
            "family P",
        ),
        (
            "standard",
            {"properties": {"sku": {"name": "Gold", "family": "C", "capacity": 1}}},
            "BadRequest",
            "Basic, Standard or Premium",
        ),
        (
            "standard",
            {"sku": {"name": "Standard", "family": "C", "capacity": 2}},
            "InvalidRequestContent",
            "'sku'",
        ),
        ("standard", {"properties": {"colour": "blue"}}, "InvalidRequestContent", "'colour'"),
        (
            "standard",
            {"properties": {"publicNetworkAccess": "Sometimes"}},
            "BadRequest",
            "publicNetworkAccess",
        ),
        ("standard", {"properties": {"shardCount": 2}}, "BadRequest", "not emulated"),
        ("standard", "{not json", "InvalidRequestContent", "not valid JSON"),
        ("standard", [1, 2], "InvalidRequestContent", "JSON object"),
    ],
)
async def test_changes_the_service_refuses_are_400(
    tiers: tuple[Emulator, aiohttp.ClientSession], cache: str, body: Any, code: str, message: str
) -> None:
    emu, session = tiers
    status, answer = await patch(session, body, name=cache)
    assert status == 400
    assert answer["error"]["code"] == code
    assert message in answer["error"]["message"]
    assert emu.writes == 0


@pytest.mark.parametrize(
    ("cache", "sku"),
    [
        ("basic", {"name": "Standard", "family": "C", "capacity": 1}),
        ("standard", {"name": "Premium", "family": "P", "capacity": 1}),
        ("premium", {"name": "Premium", "family": "P", "capacity": 5}),
        ("standard", {"name": "Standard", "family": "C", "capacity": 6}),
    ],
)
async def test_changes_the_service_allows_land(
    tiers: tuple[Emulator, aiohttp.ClientSession], cache: str, sku: dict[str, Any]
) -> None:
    _, session = tiers
    status, body = await patch(session, {"properties": {"sku": sku}}, name=cache)
    assert (status, body["properties"]["provisioningState"]) == (200, "Scaling")
    async with session.get(cache_path(cache), params=API) as r:  # lro_polls=0: lands now
        landed = await r.json()
    assert landed["properties"]["sku"] == sku
    assert landed["properties"]["provisioningState"] == "Succeeded"


async def test_a_scale_while_scaling_is_409_conflict(redis: Redis) -> None:
    emu, client, session = redis.emu, redis.client, redis.session
    await client.redis.begin_update(RG, NAME, {"sku": C2})
    status, body = await patch(session, {"properties": {"sku": {**C2, "capacity": 3}}})
    assert status == 409
    assert body["error"]["code"] == "Conflict"
    assert "busy processing a previous update request" in body["error"]["message"]
    async with session.post(
        cache_path() + "/forceReboot", params=API, json={"rebootType": "AllNodes"}
    ) as r:
        assert r.status == 409
    assert emu.writes == 1


async def test_a_failed_scale_ends_failed_and_keeps_the_sku(redis: Redis) -> None:
    emu, client = redis.emu, redis.client
    emu.set_fault("lro-fail")
    poller = await client.redis.begin_update(RG, NAME, {"sku": C2})
    with pytest.raises(HttpResponseError):
        await poller.result()
    state = emu.state()["resources"][CACHE_ID]
    assert (state["sku"]["capacity"], state["provisioningState"]) == (1, "Succeeded")


async def test_a_metrics_window_read_after_the_scale_reports_what_was(redis: Redis) -> None:
    """serverLoad through both metrics APIs: 40 % before the spike, 95 % on C1, 47.5 % on C2."""
    client, clock = redis.client, redis.clock
    await (await client.redis.begin_update(RG, NAME, {"sku": C2})).result()
    clock.advance(minutes=3)  # now 00:09; the scale landed at 00:06
    http = {"retry_total": 0, "per_call_policies": [AllowHttpPolicy()]}
    async with (
        MonitorManagementClient(EmulatorCredential(), SUB, base_url=redis.base, **http) as monitor,
        MetricsClient(redis.base, EmulatorCredential(), **http) as batch,
    ):
        start = START + timedelta(minutes=2)
        single = await monitor.metrics.list(
            CACHE_ID,
            timespan=f"{start.isoformat()}/{(start + timedelta(minutes=7)).isoformat()}",
            interval="PT1M",
            metricnames="serverLoad,errors",
            aggregation="Maximum,Total",
            filter="ErrorType eq '*'",
            metricnamespace="Microsoft.Cache/redis",
        )
        [result] = await batch.query_resources(
            resource_ids=[CACHE_ID],
            metric_namespace="Microsoft.Cache/redis",
            metric_names=["connectedclients", "usedmemorypercentage", "percentProcessorTime"],
            timespan=(start, start + timedelta(minutes=7)),
            granularity=timedelta(minutes=1),
            aggregations=["Average"],
        )
    assert single.namespace == "Microsoft.Cache/redis" and single.resourceregion == "eastus"
    load, errors = single.value
    assert (load.unit, errors.unit) == ("Percent", "Count")
    # 02–03 before the spike, 04–05 on C1, from 06 (when the scale landed) on C2
    assert [p.maximum for p in load.timeseries[0].data] == [40.0] * 2 + [95.0] * 2 + [47.5] * 3
    assert [p.total for p in errors.timeseries[0].data] == [0, 0, 19, 19, 0, 0, 0]
    assert errors.timeseries[0].metadatavalues[0].value == "UnresponsiveClients"
    clients = result.metrics["connectedclients"].timeseries[0].data
    assert [p.average for p in clients] == [40.0, 40.0, 95, 95, 95, 95, 95]
    memory = result.metrics["usedmemorypercentage"].timeseries[0].data
    assert memory[0].average == pytest.approx(29.3, abs=0.01)
    assert memory[-1].average == pytest.approx(11.72, abs=0.01)
    cpu = result.metrics["percentProcessorTime"].timeseries[0].data
    assert cpu[3].average == 95.0 and cpu[4].average == 47.5


async def test_unknown_metric_names_are_400(redis: Redis) -> None:
    params = {"metricnames": "CpuPercentage", "api-version": "2024-02-01"}
    async with redis.session.get(
        f"{CACHE_ID}/providers/Microsoft.Insights/metrics", params=params
    ) as r:
        assert r.status == 400
        assert "serverLoad" in (await r.json())["error"]["message"]  # the valid names


# -- reboot --------------------------------------------------------------------------------


async def test_force_reboot_answers_like_the_example_and_is_recorded(redis: Redis) -> None:
    emu, client, session = redis.emu, redis.client, redis.session
    answer = await client.redis.force_reboot(
        RG, NAME, RedisRebootParameters(reboot_type="AllNodes")
    )
    assert answer.message == "reboot operation enqueued"
    [sent] = [r for r in emu.requests if r["method"] == "POST"]
    assert sent["body"] == {"rebootType": "AllNodes"}
    want = example("RedisCacheForceReboot.json")["responses"]["200"]["body"]
    url = cache_path() + "/forceReboot"
    async with session.post(url, params=API, json={"rebootType": "PrimaryNode", "shardId": 0}) as r:
        assert r.status == 200
        assert shape(await r.json()) == shape(want)
    assert emu.writes == 2
    assert emu.state()["resources"][CACHE_ID]["reboots"] == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rebootType": "EveryNode"}, "AllNodes, PrimaryNode, SecondaryNode"),
        ({}, "rebootType must be"),
        ({"rebootType": "AllNodes", "shardId": -1}, "shardId"),
        ({"rebootType": "AllNodes", "now": True}, "'now'"),
    ],
)
async def test_bad_reboots_are_400(redis: Redis, body: dict[str, Any], message: str) -> None:
    emu, session = redis.emu, redis.session
    async with session.post(cache_path() + "/forceReboot", params=API, json=body) as r:
        assert r.status == 400
        assert message in (await r.json())["error"]["message"]
    assert emu.writes == 0 and emu.state()["resources"][CACHE_ID]["reboots"] == 0


async def test_a_reboot_drops_the_clients_and_quiets_errors_for_a_while(redis: Redis) -> None:
    """At 00:06:30: no clients that minute, a third back each minute; errors from 00:11."""
    emu, client, clock = redis.emu, redis.client, redis.clock
    clock.advance(seconds=30)
    await client.redis.force_reboot(RG, NAME, RedisRebootParameters(reboot_type="AllNodes"))
    seen = []
    for _ in range(6):
        clock.advance(minutes=1)
        state = emu.state()["resources"][CACHE_ID]
        seen.append((state["connectedClients"], state["errors"]))
    # the minute just completed: 06, 07, 08, 09, 10, 11
    assert seen == [(0.0, 0.0), (31.67, 0.0), (63.33, 0.0), (95.0, 0.0), (95.0, 0.0), (95.0, 19.0)]


async def test_a_secondary_reboot_goes_unnoticed_by_clients(redis: Redis) -> None:
    emu, client, clock = redis.emu, redis.client, redis.clock
    await client.redis.force_reboot(RG, NAME, RedisRebootParameters(reboot_type="SecondaryNode"))
    clock.advance(minutes=1)
    state = emu.state()["resources"][CACHE_ID]
    assert (state["reboots"], state["connectedClients"], state["errors"]) == (1, 95.0, 19.0)


# -- scenario ------------------------------------------------------------------------------


def test_the_shipped_scenario_overloads_a_c1() -> None:
    [cache] = SCENARIO.caches
    assert (cache.sku.name, cache.sku.family, cache.sku.capacity) == ("Standard", "C", 1)
    assert cache.resource_id.endswith("/providers/Microsoft.Cache/Redis/redis-agentstudio-prod")
    assert SCENARIO.description
    assert SCENARIO.policies[0]["target"]["resourceId"] == cache.resource_id
    [spike] = SCENARIO.timeline
    assert (spike.at, spike.changes) == (timedelta(minutes=4), {"clients": 95.0})


def test_tiers_scenario_applies_every_workload_field() -> None:
    clock = ManualClock(START + timedelta(minutes=2))
    emu = Emulator(parse_scenario(TIERS_YAML), now=clock.now, wobble=0)
    by_name = {v["name"]: v for v in emu.state()["resources"].values()}
    # standard: 20 clients × 2 % on a C1; 512 MiB of 1,024
    assert (by_name["standard"]["serverLoad"], by_name["standard"]["usedMemoryPercentage"]) == (
        40.0,
        50.0,
    )
    assert by_name["premium"]["serverLoad"] == 2.5  # 10 clients on a P1 (4 C1s)
    assert by_name["basic"]["connectedClients"] == 10.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("sku: {name: Premium, family: C, capacity: 1}", "family P"),
        ("sku: {name: Standard, family: C, capacity: 9}", "0 to 6"),
        ("sku: {name: Standard, family: C}", "missing key(s) capacity"),
        ("colour: blue", "unknown key(s) colour"),
        ("publicNetworkAccess: Maybe", "publicNetworkAccess"),
        ("workload: {clients: 5, qps: 9}", "unknown key(s) qps"),
    ],
)
def test_bad_cache_specs_are_reported_with_the_line(change: str, message: str) -> None:
    lines = [
        'name: x\nstart: "2026-01-01T00:00:00Z"\nduration: 5m',
        f"subscription: {SUB}\nresources:\n  - type: redisCache\n    name: c",
        f"    resourceGroup: {RG}\n    location: eastus",
        "    sku: {name: Standard, family: C, capacity: 1}\n    workload: {clients: 5}",
    ]
    text = "\n".join(lines)
    key = change.split(":")[0]
    if f"    {key}:" in text:
        text = "\n".join(
            f"    {change}" if line.startswith(f"    {key}:") else line for line in text.split("\n")
        )
    else:
        text += f"\n    {change}"
    with pytest.raises(
        ScenarioError, match=r"<scenario>:\d+: .*" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_scenario(text)


def test_timeline_fields_must_fit_the_cache() -> None:
    text = (
        f'name: x\nstart: "2026-01-01T00:00:00Z"\nduration: 5m\nsubscription: {SUB}\n'
        "resources:\n  - {type: redisCache, name: c, resourceGroup: rg, location: eastus,\n"
        "     sku: {name: Basic, family: C, capacity: 0}, workload: {clients: 5}}\n"
        "timeline:\n  - {at: 1m, resource: c, ruDemand: 10}\n"
    )
    with pytest.raises(ScenarioError, match="ruDemand does not apply to a redisCache"):
        parse_scenario(text)


async def test_an_accepted_scale_lands_though_nobody_reads_the_cache(redis: Redis) -> None:
    """As in Azure, a scale proceeds after its answer whether or not anyone watches: a
    controller that died right after the PATCH finds the new SKU serving, from the time
    the scale ended (its load halved in the metrics of the minutes after it)."""
    emu, session, clock = redis.emu, redis.session, redis.clock
    status, _ = await patch(session, {"properties": {"sku": C2}})
    assert status == 200
    clock.advance(minutes=5)  # nobody reads the cache meanwhile
    state = emu.state()["resources"][CACHE_ID]
    assert state["sku"] == C2 and state["provisioningState"] == "Succeeded"
    assert state["serverLoad"] == 47.5
    assert [r["method"] for r in emu.requests if "Microsoft.Cache" in r["path"]] == ["PATCH"]
