"""The official async Azure SDK clients parse the emulator's answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.appcontainers.aio import ContainerAppsAPIClient
from azure.mgmt.monitor.aio import MonitorManagementClient
from azure.mgmt.resourcegraph.aio import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from azure.monitor.querymetrics.aio import MetricsClient

from controller.emulator import Emulator
from controller.emulator.scenario import parse_scenario

from .support import API_APP, RG, START, SUB, ManualClock

Make = Callable[..., Emulator]


class FakeAsyncCredential:
    """Any token will do: the emulator only checks that a bearer token is present."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("fake-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> FakeAsyncCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class AllowHttpPolicy(SansIOHTTPPolicy[Any, Any]):
    """Lets the bearer-token policy send to http://127.0.0.1 (it insists on https)."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False


def _kwargs() -> dict[str, Any]:
    return {"per_call_policies": [AllowHttpPolicy()], "polling_interval": 0, "retry_total": 0}


def test_container_apps_client(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()
    clock.set(6)

    async def body() -> None:
        cred = FakeAsyncCredential()
        async with (
            emu.serve() as base,
            ContainerAppsAPIClient(cred, SUB, base_url=base, **_kwargs()) as aca,
        ):
            app = await aca.container_apps.get(RG, "agentstudio-api")
            assert app.id == API_APP and app.location == "eastus"
            assert app.latest_revision_name == "agentstudio-api--r1"
            assert app.template.scale.min_replicas == 1
            container = app.template.containers[0]
            assert (container.image, container.resources.cpu, container.resources.memory) == (
                "agentstudio/api:1.4.2", 0.5, "1Gi",
            )  # fmt: skip

            api = {"name": "api", "image": "agentstudio/api:1.4.2"}
            scale_and_size = {
                "scale": {"minReplicas": 2, "maxReplicas": 10},
                "containers": [{**api, "resources": {"cpu": 1.0, "memory": "2Gi"}}],
            }
            envelope: dict[str, Any] = {"properties": {"template": scale_and_size}}
            poller = await aca.container_apps.begin_update(RG, "agentstudio-api", envelope)
            updated = await poller.result()
            assert updated.template.scale.min_replicas == 2
            assert updated.template.containers[0].resources.cpu == 1.0
            # a template change is a new revision; the old one serves until it is ready
            scaled = updated.latest_revision_name
            assert scaled != "agentstudio-api--r1"
            assert updated.latest_ready_revision_name == "agentstudio-api--r1"

            emu.set_fault("lro-fail")
            poller = await aca.container_apps.begin_update(RG, "agentstudio-api", envelope)
            with pytest.raises(HttpResponseError) as failed:
                await poller.result()
            assert failed.value.error is not None and failed.value.error.code == "InternalError"

            revisions = [
                r async for r in aca.container_apps_revisions.list_revisions(RG, "agentstudio-api")
            ]
            active = {r.name: r for r in revisions if r.active}
            assert active.keys() == {"agentstudio-api--r1", scaled}
            assert active[scaled].provisioning_state == "Provisioning"
            assert active[scaled].traffic_weight == 0
            clock.set(6.5)  # ready: it takes over, the old one is deactivated
            revisions = [
                r async for r in aca.container_apps_revisions.list_revisions(RG, "agentstudio-api")
            ]
            [serving] = [r for r in revisions if r.active]
            assert serving.name == scaled and serving.traffic_weight == 100
            assert serving.replicas == 2 and serving.health_state == "Healthy"
            app = await aca.container_apps.get(RG, "agentstudio-api")
            assert app.latest_ready_revision_name == scaled
            assert (
                await aca.container_apps_revisions.restart_revision(RG, "agentstudio-api", scaled)
                is None
            )

            emu.set_fault("arm-throttle", duration_s=30)
            with pytest.raises(HttpResponseError) as throttled:
                await aca.container_apps.get(RG, "agentstudio-api")
            assert throttled.value.status_code == 429
            assert (
                throttled.value.error is not None
                and throttled.value.error.code == "TooManyRequests"
            )
            assert throttled.value.response.headers["Retry-After"] == "1"
        await cred.close()
        assert emu.writes == 3  # two accepted PATCHes (one failed later) and a restart

    anyio.run(body)


def test_monitor_management_metrics_list(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()
    clock.set(8)

    async def body() -> None:
        async with (
            emu.serve() as base,
            MonitorManagementClient(FakeAsyncCredential(), SUB, base_url=base, **_kwargs()) as mon,
        ):
            start = START + timedelta(minutes=3)
            result = await mon.metrics.list(
                API_APP,
                timespan=f"{start.isoformat()}/{(start + timedelta(minutes=5)).isoformat()}",
                interval="PT1M",
                metricnames="CpuPercentage,MemoryPercentage",
                aggregation="Average,Maximum",
                filter="revisionName eq '*'",
                metricnamespace="Microsoft.App/containerApps",
            )
        assert result.resourceregion == "eastus"
        cpu = result.value[0]
        assert cpu.name.value == "CpuPercentage" and cpu.unit == "Percent"
        series = cpu.timeseries[0]
        assert series.metadatavalues[0].name.value == "revisionname"
        assert series.metadatavalues[0].value == "agentstudio-api--r1"
        assert [p.time_stamp for p in series.data] == [
            start + timedelta(minutes=i) for i in range(5)
        ]
        assert [p.average for p in series.data] == [40.0, 100.0, 100.0, 100.0, 100.0]
        assert series.data[0].minimum is None  # not asked for

    anyio.run(body)


def test_metrics_client_query_resources(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()
    clock.set(6)

    async def body() -> None:
        async with (
            emu.serve() as base,
            MetricsClient(base, FakeAsyncCredential(), **_kwargs()) as mc,
        ):
            results = await mc.query_resources(
                resource_ids=[API_APP],
                metric_namespace="Microsoft.App/containerApps",
                metric_names=["CpuPercentage", "Replicas"],
                timespan=(START, START + timedelta(minutes=5)),
                granularity=timedelta(minutes=1),
                aggregations=["Average", "Maximum"],
            )
            emu.set_fault("metrics-null")
            empty = await mc.query_resources(
                resource_ids=[API_APP],
                metric_namespace="Microsoft.App/containerApps",
                metric_names=["CpuPercentage"],
                timespan=(START, START + timedelta(minutes=5)),
                granularity=timedelta(minutes=1),
                aggregations=["Average"],
            )
        (result,) = results
        assert result.granularity == timedelta(minutes=1)
        assert result.resource_region == "eastus"
        cpu = result.metrics["CpuPercentage"]
        assert cpu.id.split("/providers/Microsoft.Insights/metrics/")[0] == API_APP
        points = cpu.timeseries[0].data
        assert [p.timestamp for p in points] == [START + timedelta(minutes=i) for i in range(5)]
        assert [p.average for p in points] == [40.0, 40.0, 40.0, 40.0, 100.0]
        assert result.metrics["Replicas"].timeseries[0].data[0].maximum == 1.0
        null_points = empty[0].metrics["CpuPercentage"].timeseries[0].data
        assert null_points and all(p.average is None for p in null_points)

    anyio.run(body)


GRAPH_FLEET = """\
name: graph-sdk
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: sub-1
resources:
  - type: containerApp
    count: 2500
    name: "app-{i:04d}"
    resourceGroup: rg-fleet
    location: eastus
    containers: [{name: c, image: i:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
    tags: {remediator/policy: api}
    vary:
      - {every: 5, tags: {remediator/policy: batch}}
"""


def test_resource_graph_client(clock: ManualClock) -> None:
    """``ResourceGraphClient.resources`` pages through 2,500 rows by skip token, and a
    spent quota surfaces as a 429 carrying the quota headers."""
    emu = Emulator(parse_scenario(GRAPH_FLEET), now=clock.now, wobble=0.0)
    query = (
        "Resources | where type =~ 'microsoft.app/containerapps' "
        "| where tags['remediator/policy'] =~ 'api' or tags['remediator/policy'] =~ 'batch' "
        "| project id, name, tags | order by id asc"
    )

    async def body() -> None:
        async with (
            emu.serve() as base,
            ResourceGraphClient(FakeAsyncCredential(), base_url=base, **_kwargs()) as graph,
        ):
            options = QueryRequestOptions(top=1000)
            page = await graph.resources(
                QueryRequest(subscriptions=["sub-1"], query=query, options=options)
            )
            assert (page.total_records, page.count, page.result_truncated) == (2500, 1000, "false")
            rows = list(page.data)
            pages = 1
            while page.skip_token:
                options = QueryRequestOptions(skip_token=page.skip_token, top=1000)
                page = await graph.resources(
                    QueryRequest(subscriptions=["sub-1"], query=query, options=options)
                )
                rows += page.data
                pages += 1
            assert pages == 3 and len(rows) == 2500
            assert [r["name"] for r in rows] == [f"app-{i:04d}" for i in range(1, 2501)]
            assert sum(r["tags"]["remediator/policy"] == "batch" for r in rows) == 500

            for _ in range(15 - pages):  # the rest of this 5-second window's quota
                await graph.resources(
                    QueryRequest(subscriptions=["sub-1"], query="Resources | take 1")
                )
            with pytest.raises(HttpResponseError) as throttled:
                await graph.resources(QueryRequest(subscriptions=["sub-1"], query="Resources"))
            assert throttled.value.status_code == 429
            headers = throttled.value.response.headers
            assert headers["x-ms-user-quota-remaining"] == "0"
            assert headers["x-ms-user-quota-resets-after"] == "00:00:05"
            assert "Retry-After" not in headers  # only the quota headers say when

            clock.advance(seconds=5)
            with pytest.raises(HttpResponseError) as refused:
                await graph.resources(
                    QueryRequest(subscriptions=["sub-1"], query="Resources | summarize count()")
                )
            assert refused.value.status_code == 400
            assert refused.value.error is not None and refused.value.error.code == "BadRequest"
            assert "summarize" in str(refused.value)

    anyio.run(body)
