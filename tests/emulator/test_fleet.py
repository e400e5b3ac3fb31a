"""Resources that come and go, fleets declared with ``count``, and the shipped ``fleet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from controller.emulator import Emulator, ScenarioError, load_scenario
from controller.emulator.scenario import parse_scenario

from .support import ACA, MON, ManualClock, served

GRAPH = "/providers/Microsoft.ResourceGraph/resources"
SUB = "00000000-0000-0000-0000-000000000001"
FLEET = f"/subscriptions/{SUB}/resourceGroups"

SPAN = """\
name: span
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: sub-1
resources:
  - type: containerApp
    resourceGroup: rg
    name: always
    location: eastus
    containers: [{name: c, image: i:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
  - type: containerApp
    resourceGroup: rg
    name: late
    location: eastus
    createdAt: 10m
    deletedAt: 30m
    containers: [{name: c, image: i:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
"""
LATE = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.App/containerApps/late"


async def _graph_names(s: aiohttp.ClientSession, subscriptions: list[str]) -> list[str]:
    body = {"subscriptions": subscriptions, "query": "Resources | project name"}
    async with s.post(GRAPH, params={"api-version": "2022-10-01"}, json=body) as r:
        assert r.status == 200
        return sorted(row["name"] for row in (await r.json())["data"])


async def _seen(s: aiohttp.ClientSession, resource_id: str) -> dict[str, Any]:
    """What ARM, Resource Graph and both metrics APIs say about ``resource_id`` now."""
    async with s.get(resource_id, params=ACA) as r:
        arm = r.status, (await r.json()).get("error", {}).get("code")
    sub = resource_id.split("/")[2]
    metrics = {"metricnames": "CpuPercentage", "interval": "PT1M", **MON}
    async with s.get(f"{resource_id}/providers/Microsoft.Insights/metrics", params=metrics) as r:
        single = r.status
    async with s.post(
        f"/subscriptions/{sub}/metrics:getBatch",
        params={
            "metricnames": "CpuPercentage",
            "metricnamespace": "Microsoft.App/containerApps",
            **MON,
        },
        json={"resourceids": [resource_id]},
    ) as r:
        batch = (await r.json())["values"][0]["value"][0]["errorCode"]
    return {
        "arm": arm,
        "graph": resource_id.rsplit("/", 1)[1] in await _graph_names(s, [sub]),
        "metrics": single,
        "batch": batch,
    }


GONE = {
    "arm": (404, "ResourceNotFound"),
    "graph": False,
    "metrics": 404,
    "batch": "ResourceNotFound",
}
THERE = {"arm": (200, None), "graph": True, "metrics": 200, "batch": "Success"}


def test_a_resource_exists_only_within_its_span(clock: ManualClock) -> None:
    emu = Emulator(parse_scenario(SPAN), now=clock.now, wobble=0.0)

    async def body() -> None:
        async with served(emu) as s:
            clock.set(5)
            assert await _seen(s, LATE) == GONE
            assert await _graph_names(s, ["sub-1"]) == ["always"]
            clock.set(10)
            assert await _seen(s, LATE) == THERE
            clock.set(15)
            params = {
                "metricnames": "CpuPercentage", "interval": "PT1M", "aggregation": "Average",
                "timespan": "2026-01-01T00:07:00Z/2026-01-01T00:13:00Z", **MON,
            }  # fmt: skip
            async with s.get(f"{LATE}/providers/Microsoft.Insights/metrics", params=params) as r:
                points = (await r.json())["value"][0]["timeseries"][0]["data"]
            # no data before it was created: timestamps only, as Azure answers
            assert [("average" in p) for p in points] == [False] * 3 + [True] * 3
            clock.set(29.9)
            assert await _seen(s, LATE) == THERE
            clock.set(30)
            assert await _seen(s, LATE) == GONE
            assert LATE not in emu.state()["resources"]

    anyio.run(body)


def test_apps_added_and_deleted_at_runtime(clock: ManualClock) -> None:
    emu = Emulator(parse_scenario(SPAN), now=clock.now, wobble=0.0)
    new = "/subscriptions/sub-2/resourceGroups/rg-new/providers/Microsoft.App/containerApps/fresh"

    async def body() -> None:
        async with served(emu) as s:
            clock.set(2)
            assert await _seen(s, new) == GONE
            spec = {"name": "fresh", "resourceGroup": "rg-new", "subscription": "sub-2",
                    "tags": {"remediator/policy": "api"}}  # fmt: skip
            async with s.post("/_emulator/resources", json=spec) as r:
                assert r.status == 201 and (await r.json())["id"] == new
            async with s.post("/_emulator/resources", json=spec) as r:
                assert r.status == 409  # it exists
            async with s.post("/_emulator/resources", json={**spec, "cpu": 1}) as r:
                assert r.status == 400 and "cpu" in (await r.json())["error"]["message"]
            assert await _seen(s, new) == THERE
            async with s.get("/subscriptions/sub-2/resourceGroups/rg-new", params=ACA) as r:
                assert r.status == 200  # its group is known too
            clock.set(3)
            async with s.delete(f"/_emulator/resources{new}") as r:
                assert r.status == 204
            async with s.delete(f"/_emulator/resources{new}") as r:
                assert r.status == 404
            assert await _seen(s, new) == GONE
            # and through the Emulator's methods
            assert (
                emu.add_app({"name": "fresh", "resourceGroup": "rg-new", "subscription": "sub-2"})
                == new
            )
            assert await _seen(s, new) == THERE
            emu.delete_app(new)
            assert await _seen(s, new) == GONE
            with pytest.raises(KeyError):
                emu.delete_app(new)

    anyio.run(body)


def test_the_fleet_scenario(clock: ManualClock) -> None:
    fleet = load_scenario("fleet")
    assert len(fleet.resources) == 300
    assert {r.subscription for r in fleet.resources} == {SUB}
    assert {(r.resource_group, r.location) for r in fleet.resources} == {
        ("rg-fleet-east", "eastus"), ("rg-fleet-west", "westeurope"),
    }  # fmt: skip
    tagged = [r for r in fleet.resources if r.tags.get("remediator/policy") == "api"]
    assert 200 < len(tagged) < 300
    spiking = {e.resource for e in fleet.timeline if e.changes.get("cpu_demand_cores", 0) > 0.5}
    assert len(spiking) >= 3
    created = [r.name for r in fleet.resources if r.created_at is not None]
    deleted = [r.name for r in fleet.resources if r.deleted_at is not None]
    assert created == ["app-299"] and deleted == ["app-121"]
    emu = Emulator(fleet, now=clock.now, wobble=0.0)
    selector = {
        "subscriptions": [SUB],
        "query": "Resources | where type =~ 'microsoft.app/containerapps' "
        "| where tags['remediator/policy'] =~ 'api' | project name",
        "options": {"$top": 1000},  # one page (100 rows without $top)
    }

    async def names(s: aiohttp.ClientSession) -> set[str]:
        async with s.post(GRAPH, params={"api-version": "2022-10-01"}, json=selector) as r:
            return {row["name"] for row in (await r.json())["data"]}

    async def body() -> None:
        async with served(emu) as s:
            clock.set(1)
            first = await names(s)
            assert "app-299" not in first and "app-121" in first
            assert len(first) == len(tagged) - 1
            clock.set(25)
            assert "app-299" in await names(s)
            clock.set(45)
            later = await names(s)
            assert "app-121" not in later and len(later) == len(tagged) - 1

    anyio.run(body)


BASE = """\
name: bad
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: sub-1
resources:
  - type: containerApp
    count: 4
    name: "{name}"
    resourceGroup: rg
    location: eastus
    containers: [{{name: c, image: i:1, cpu: 0.5, memory: 1Gi}}]
    workload: {{cpuDemandCores: 0.1, baseMemoryMiB: 100}}
    vary:
{vary}
"""


@pytest.mark.parametrize(
    ("name", "vary", "error"),
    [
        ("app", "      - {every: 2, location: westus}", ":8: resource app: name must contain {i}"),
        ("app-{j}", "      - {every: 2, location: westus}", ":8: name: bad template 'app-{j}'"),
        (
            "app-{i}",
            "      - {every: 2, colour: red}",
            ":14: resource app-{i}: vary entry: unknown key(s) colour",
        ),
        (
            "app-{i}",
            "      - {location: westus}",
            ":14: resource app-{i}: a vary entry needs either every or indices",
        ),
        (
            "app-{i}",
            "      - {indices: [5], location: westus}",
            ":14: vary.indices must list integers in 1..4",
        ),
        ("app-{i}", "      - {every: 2}", ":14: resource app-{i}: a vary entry changes nothing"),
        (
            "app-{i}",
            "      - {every: 2, offset: 2, location: westus}",
            ":14: vary.offset must be an integer in 0..1",
        ),
        (
            "app-{i}",
            "      - {every: 2, tags: [a]}",
            ":14: resource app-{i}: vary.tags must be a mapping",
        ),
        (
            "app-{i}",
            "      - {indices: [2], createdAt: 2h, deletedAt: 1h}",
            ":14: resource app-2: deletedAt must come after createdAt",
        ),
        (
            "app-{i}",
            "      - {every: 2, createdAt: soon}",
            ":14: resource app-2.createdAt: bad duration",
        ),
        ("app-{i}", "      every: 2", ":13: resource app-{i}: vary must be a list"),
    ],
)
def test_fleet_mistakes_name_the_line(tmp_path: Path, name: str, vary: str, error: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.format(name=name, vary=vary))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert f"{path}{error}" in str(exc.value)


def test_fleet_templates_and_overrides() -> None:
    text = BASE.format(
        name="web-{i:02d}",
        vary="      - {every: 2, resourceGroup: 'rg-{i}', tags: {team: 't{i}'}}\n"
        "      - {indices: [3], workload: {cpuDemandCores: 0.9}}",
    )
    scenario = parse_scenario(text)
    specs = {r.name: r for r in scenario.resources}
    assert list(specs) == ["web-01", "web-02", "web-03", "web-04"]
    assert (specs["web-02"].resource_group, specs["web-02"].tags) == ("rg-2", {"team": "t2"})
    assert (specs["web-01"].resource_group, specs["web-01"].tags) == ("rg", {})
    assert specs["web-03"].workload.cpu_demand_cores == 0.9
    assert specs["web-03"].workload.base_memory_mib == 100  # merged, not replaced


class _Watched(dict[str, Any]):
    """A dict that counts every walk over it (iteration, keys, values, items)."""

    walks = 0

    def __iter__(self) -> Any:
        _Watched.walks += 1
        return super().__iter__()

    def keys(self) -> Any:
        _Watched.walks += 1
        return super().keys()

    def values(self) -> Any:
        _Watched.walks += 1
        return super().values()

    def items(self) -> Any:
        _Watched.walks += 1
        return super().items()


def test_lookups_do_not_walk_the_estate(clock: ManualClock) -> None:
    """An ARM GET, a group GET and a metrics batch find their resources by index: none
    walks the estate's apps (each once rebuilt a map of every resource per lookup)."""
    emu = Emulator(load_scenario("fleet"), now=clock.now, wobble=0.0)
    world = emu._world
    world.resources = _Watched(world.resources)
    ids = [
        f"{FLEET}/rg-fleet-east/providers/Microsoft.App/containerApps/app-{i:03d}"
        for i in range(1, 100, 2)
    ]

    async def body() -> None:
        async with served(emu) as s:
            clock.set(5)
            _Watched.walks = 0
            async with s.get(ids[0], params=ACA) as r:
                assert r.status == 200
            async with s.get(f"{FLEET}/rg-fleet-east", params=ACA) as r:
                assert r.status == 200
            async with s.post(
                f"/subscriptions/{SUB}/metrics:getBatch",
                params={"metricnames": "CpuPercentage", **MON},
                json={"resourceids": ids},
            ) as r:
                values = (await r.json())["values"]
                assert len(values) == 50 and all(
                    v["value"][0]["errorCode"] == "Success" for v in values
                )
            async with s.get(
                f"{ids[1]}/providers/Microsoft.Insights/metrics",
                params={"metricnames": "CpuPercentage", **MON},
            ) as r:
                assert r.status == 200
            assert _Watched.walks == 0

    anyio.run(body)
