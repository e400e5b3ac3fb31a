"""Cosmos DB throughput through the real SDK: shapes as in the REST examples, the offer
rules the service enforces, the workload model's 429 share, and both LRO styles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cosmosdb.aio import CosmosDBManagementClient

from controller.azure.clients import AllowHttpPolicy
from controller.azure.credentials import EmulatorCredential
from controller.emulator import Emulator, load_scenario

from .support import ManualClock, covers, shape

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).parents[1] / "fixtures" / "azure-examples" / "cosmos-db"
RG, ACCOUNT, DB = "rg-agentstudio-prod", "cosmos-agentstudio-prod", "agentstudio"
SCENARIO = load_scenario("cosmos-throttling")
OFFER_ID = SCENARIO.offers[0].resource_id


Cosmos = tuple[Emulator, CosmosDBManagementClient, ManualClock, str]


@pytest.fixture
async def cosmos() -> AsyncIterator[Cosmos]:
    clock = ManualClock(SCENARIO.start + timedelta(minutes=10))
    emu = Emulator(SCENARIO, now=clock.now, wobble=0)
    async with (
        emu.serve() as base,
        CosmosDBManagementClient(
            EmulatorCredential(),
            SCENARIO.subscription,
            base_url=base,
            retry_total=0,
            per_call_policies=[AllowHttpPolicy()],
            polling_interval=0,
        ) as client,
    ):
        yield emu, client, clock, base


async def test_throughput_get_has_the_shape_of_the_rest_example(
    cosmos: Cosmos,
) -> None:
    _emu, client, _, _base = cosmos
    raw: list[Any] = []
    await client.sql_resources.get_sql_database_throughput(
        RG, ACCOUNT, DB, cls=lambda response, *_: raw.append(response.http_response.json())
    )
    example = json.loads((EXAMPLES / "CosmosDBSqlDatabaseThroughputGet.json").read_text())
    assert covers(shape(raw[0]), shape(example["responses"]["200"]["body"])) == []
    resource = await client.sql_resources.get_sql_database_throughput(RG, ACCOUNT, DB)
    assert resource.resource is not None
    assert resource.resource.throughput == 4000
    assert resource.resource.minimum_throughput == "400"  # strings, as the service sends
    assert resource.resource.offer_replace_pending == "false"
    assert resource.resource.instant_maximum_throughput == "10000"


async def test_raising_manual_throughput_lands_when_the_operation_ends_and_ends_the_429s(
    cosmos: Cosmos,
) -> None:
    """5,000 RU/s wanted of 4,000: a fifth is throttled; at 6,000 none is."""
    emu, client, clock, _ = cosmos
    assert emu.state()["resources"][OFFER_ID]["throttledPercent"] == pytest.approx(20.0)
    poller = await client.sql_resources.begin_update_sql_database_throughput(
        RG, ACCOUNT, DB, {"properties": {"resource": {"throughput": 6000}}}
    )
    result = await poller.result()
    assert result.resource is not None and result.resource.throughput == 6000
    assert emu.writes == 1
    clock.advance(minutes=2)
    state = emu.state()["resources"][OFFER_ID]
    assert state["throttledPercent"] == 0.0
    assert state["normalizedRUConsumption"] == pytest.approx(5000 / 6000 * 100, abs=0.01)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"properties": {"resource": {"throughput": 300}}}, "below the minimum 400"),
        ({"properties": {"resource": {"throughput": 4050}}}, "multiple of 100"),
        (
            {"properties": {"resource": {"autoscaleSettings": {"maxThroughput": 8000}}}},
            "migrate it to autoscale",
        ),
    ],
)
async def test_offers_the_service_refuses_are_400(cosmos: Cosmos, body: Any, message: str) -> None:
    emu, client, _, _base = cosmos
    with pytest.raises(HttpResponseError) as raised:
        await client.sql_resources.begin_update_sql_database_throughput(RG, ACCOUNT, DB, body)
    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.code == "BadRequest"
    assert message in str(raised.value)
    assert emu.writes == 0


async def test_a_raise_past_the_instant_maximum_is_a_pending_split_that_raises_the_floor(
    cosmos: Cosmos,
) -> None:
    _emu, client, clock, _ = cosmos
    poller = await client.sql_resources.begin_update_sql_database_throughput(
        RG, ACCOUNT, DB, {"properties": {"resource": {"throughput": 20000}}}
    )
    pending = await poller.result()
    assert pending.resource is not None
    assert pending.resource.offer_replace_pending == "true"
    assert pending.resource.throughput == 4000  # not yet
    with pytest.raises(HttpResponseError, match="pending"):
        await client.sql_resources.begin_update_sql_database_throughput(
            RG, ACCOUNT, DB, {"properties": {"resource": {"throughput": 5000}}}
        )
    clock.advance(minutes=240)
    done = await client.sql_resources.get_sql_database_throughput(RG, ACCOUNT, DB)
    assert done.resource is not None
    assert (done.resource.throughput, done.resource.offer_replace_pending) == (20000, "false")
    assert int(done.resource.minimum_throughput or 0) == 2000  # the floor rose for good


async def test_migrate_answers_with_location_and_async_operation_like_the_example(
    cosmos: Cosmos,
) -> None:
    """The POST is 202 with Location = Azure-AsyncOperation (the example's headers); the
    SDK polls it and reads the resulting offer."""
    emu, client, _, base = cosmos
    example = json.loads((EXAMPLES / "CosmosDBSqlDatabaseMigrateToAutoscale.json").read_text())
    assert set(example["responses"]["202"]["headers"]) == {"Location", "Azure-AsyncOperation"}
    url = f"{OFFER_ID}/throughputSettings/default/migrateToAutoscale?api-version=2025-10-15"
    auth = {"Authorization": "Bearer t"}
    async with aiohttp.ClientSession(headers=auth) as session, session.post(base + url) as response:
        assert response.status == 202
        assert response.headers["Location"] == response.headers["Azure-AsyncOperation"]
        assert "/operationsStatus/" in response.headers["Location"]
    poller = await client.sql_resources.begin_migrate_sql_database_to_manual_throughput(
        RG, ACCOUNT, DB
    )
    result = await poller.result()
    assert result.resource is not None and result.resource.autoscale_settings is None
    assert emu.writes == 2


async def test_an_accepted_offer_lands_though_nobody_polls(cosmos: Cosmos) -> None:
    """A controller that died right after its PUT's 202 finds the new offer in place:
    Azure ends the operation whether or not its status is polled."""
    emu, client, clock, _ = cosmos
    await client.sql_resources.begin_update_sql_database_throughput(
        RG, ACCOUNT, DB, {"properties": {"resource": {"throughput": 6000}}}
    )  # the poller is dropped: nobody asks for the status
    clock.advance(minutes=2)
    state = emu.state()["resources"][OFFER_ID]
    assert state["throttledPercent"] == 0.0
    done = await client.sql_resources.get_sql_database_throughput(RG, ACCOUNT, DB)
    assert done.resource is not None and done.resource.throughput == 6000
    statuses = [r for r in emu.requests if "operationsStatus" in r["path"]]
    assert statuses == []
