"""Resource Graph: the query subset, scoping, paging, the quota and its faults, over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from controller.emulator import Emulator
from controller.emulator.graph import SNAPSHOTS_KEPT
from controller.emulator.scenario import parse_scenario

from .support import ManualClock, served

Make = Callable[..., Emulator]
GRAPH = "/providers/Microsoft.ResourceGraph/resources"
API = {"api-version": "2022-10-01"}

ESTATE = """\
name: graph
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: sub-1
resources:
  - type: containerApp
    count: 6
    name: "app-{i}"
    resourceGroup: rg-A
    location: eastus
    containers: [{name: c, image: i:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
    tags: {remediator/policy: api, team: payments}
    vary:
      - {every: 2, resourceGroup: rg-b, location: westeurope, tags: {team: Search}}
      - {indices: [3], tags: {remediator/policy: null, owner: alice}}
      - {indices: [6], subscription: sub-2}
  - type: containerApp
    name: Billing-Worker
    subscription: sub-2
    resourceGroup: rg-A
    location: East US
    maxReplicas: 4
    containers: [{name: c, image: i:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
    tags: {owner: bob smith}
"""
ALL = ["Billing-Worker", "app-1", "app-2", "app-3", "app-4", "app-5", "app-6"]
APPS = ALL[1:]


def _estate(clock: ManualClock, text: str = ESTATE, **kwargs: Any) -> Emulator:
    return Emulator(parse_scenario(text), now=clock.now, wobble=0.0, **kwargs)


async def _query(
    session: aiohttp.ClientSession,
    query: str,
    subscriptions: list[str] | None = None,
    **options: Any,
) -> tuple[int, Any, Any]:
    body: dict[str, Any] = {"subscriptions": subscriptions or ["sub-1", "sub-2"], "query": query}
    if options:
        body["options"] = options
    async with session.post(GRAPH, params=API, json=body) as r:
        return r.status, await r.json(), r.headers


def _names(answer: dict[str, Any]) -> list[str]:
    return sorted(row["name"] for row in answer["data"])


CASES = [
    ("type == 'microsoft.app/containerapps'", ALL),
    ("type == 'Microsoft.App/containerApps'", []),  # == is case-sensitive
    ("type =~ 'Microsoft.App/containerApps'", ALL),
    ("name != 'app-1'", [n for n in ALL if n != "app-1"]),
    ("name !~ 'BILLING-worker'", APPS),
    ("resourceGroup in ('rg-b')", ["app-2", "app-4", "app-6"]),  # reported lower-case
    ("resourceGroup in ('RG-B')", []),
    ("resourceGroup in~ ('RG-B', 'rg-zz')", ["app-2", "app-4", "app-6"]),
    ("resourceGroup !in ('rg-b')", ["Billing-Worker", "app-1", "app-3", "app-5"]),
    ("resourceGroup !in~ ('RG-B')", ["Billing-Worker", "app-1", "app-3", "app-5"]),
    ("tags['remediator/policy'] =~ 'API'", ["app-1", "app-2", "app-4", "app-5", "app-6"]),
    ("tags['remediator/policy'] == 'API'", []),
    ("tags['remediator/policy'] != 'api'", ["Billing-Worker", "app-3"]),  # absent: ""
    ('tags["team"] in~ ("search")', ["app-2", "app-4", "app-6"]),
    ("tags.team in ('search')", []),
    ("tags.team in ('Search', 'payments')", ["app-1", "app-2", "app-3", "app-4", "app-5", "app-6"]),
    ("isnotempty(tags['owner'])", ["Billing-Worker", "app-3"]),
    ("isempty(tags['owner'])", ["app-1", "app-2", "app-4", "app-5", "app-6"]),
    ("name startswith 'APP-'", APPS),
    ("name !startswith 'app-'", ["Billing-Worker"]),
    ("name startswith_cs 'APP-'", []),
    ("name endswith '-WORKER'", ["Billing-Worker"]),
    ("name contains 'ING-W'", ["Billing-Worker"]),
    ("name contains_cs 'ING-W'", []),
    ("name !contains 'app'", ["Billing-Worker"]),
    ("tags.owner has 'SMITH'", ["Billing-Worker"]),
    ("tags.owner has 'smi'", []),  # has matches whole terms only
    ("tags.owner !has 'smith'", APPS),
    ("name matches regex '^app-[2-4]$'", ["app-2", "app-3", "app-4"]),
    ("name matches regex '^APP'", []),  # regex matching is case-sensitive
    ("location =~ 'eastus' and name startswith 'app-'", ["app-1", "app-3", "app-5"]),
    ("location == 'westeurope' or name == 'app-1'", ["app-1", "app-2", "app-4", "app-6"]),
    ("not(name startswith 'app-')", ["Billing-Worker"]),
    (
        "(location == 'eastus' or location == 'westeurope') and not(isempty(tags.owner))",
        ["Billing-Worker", "app-3"],
    ),
    ("name == 'app-1' or name == 'app-2' and location == 'eastus'", ["app-1"]),  # and first
    ("properties.template.scale.maxReplicas == 4", ["Billing-Worker"]),
    ("properties.template.scale.maxReplicas > 4", APPS),
    ("subscriptionId == 'sub-2'", ["Billing-Worker", "app-6"]),
    ('name == "app-\\x31"', "error"),  # unsupported escape: a 400, not a silent miss
    ("name == 'it\\'s'", []),
    ("name == @'app-1'", ["app-1"]),
]


@pytest.mark.parametrize(("where", "expected"), CASES)
def test_operator(clock: ManualClock, where: str, expected: list[str] | str) -> None:
    emu = _estate(clock)

    async def body() -> None:
        async with served(emu) as s:
            status, answer, _ = await _query(s, f"Resources | where {where}")
            if expected == "error":
                assert status == 400, answer
                return
            assert status == 200, answer
            assert _names(answer) == expected
            assert answer["totalRecords"] == answer["count"] == len(expected)

    anyio.run(body)


def test_the_controllers_query_and_the_row_shape(clock: ManualClock) -> None:
    emu = _estate(clock)
    query = """Resources
    | where type =~ 'microsoft.app/containerapps'
    | where subscriptionId in~ ('sub-1', 'sub-2')
    | where resourceGroup in~ ('rg-a', 'rg-b')
    | where tags['remediator/policy'] =~ 'api'
    | where isnotempty(tags['team'])
    | where tags['team'] in~ ('payments', 'search')
    | where name matches regex '^app-[0-9]+$'
    | where (location =~ 'eastus' and name startswith 'app-')
    | project id, name, type, location, resourceGroup, subscriptionId, tags
    | order by id asc"""

    async def body() -> None:
        async with served(emu) as s:
            status, answer, _ = await _query(s, query)
            assert status == 200, answer
            assert [r["name"] for r in answer["data"]] == ["app-1", "app-5"]
            assert answer["data"][0] == {
                "id": "/subscriptions/sub-1/resourceGroups/rg-A/providers/Microsoft.App/containerApps/app-1",
                "name": "app-1",
                "type": "microsoft.app/containerapps",
                "location": "eastus",
                "resourceGroup": "rg-a",
                "subscriptionId": "sub-1",
                "tags": {"remediator/policy": "api", "team": "payments"},
            }
            assert answer["resultTruncated"] == "false" and answer["facets"] == []
            assert "$skipToken" not in answer
            _, full, _ = await _query(s, "Resources | where name == 'Billing-Worker'")
            row = full["data"][0]
            assert row["location"] == "eastus" and row["tags"] == {"owner": "bob smith"}
            assert row["properties"]["provisioningState"] == "Succeeded"
            assert {"id", "name", "type", "location", "resourceGroup", "subscriptionId"} <= set(row)

    anyio.run(body)


def test_project_order_and_limit(clock: ManualClock) -> None:
    emu = _estate(clock)

    async def body() -> None:
        async with served(emu) as s:
            _, answer, _ = await _query(s, "Resources | project name, location | order by name")
            names = [r["name"] for r in answer["data"]]
            assert names == sorted(ALL, reverse=True)  # Kusto sorts descending unless told
            assert set(answer["data"][0]) == {"name", "location"}
            _, answer, _ = await _query(
                s, "Resources | sort by location asc, name desc | project name"
            )
            assert [r["name"] for r in answer["data"]] == [
                "app-5", "app-3", "app-1", "Billing-Worker", "app-6", "app-4", "app-2",
            ]  # fmt: skip
            _, answer, _ = await _query(s, "Resources | order by name asc | take 2", **{"$top": 1})
            assert [r["name"] for r in answer["data"]] == ["Billing-Worker"]
            assert answer["totalRecords"] == 2 and answer["resultTruncated"] == "true"
            assert "$skipToken" not in answer  # a limit makes the result unpageable
            # a where after project sees only the projected columns
            status, answer, _ = await _query(s, "Resources | project name | where location == 'x'")
            assert status == 400 and "location" in answer["error"]["details"][0]["message"]

    anyio.run(body)


def test_scoped_by_the_requests_subscriptions(clock: ManualClock) -> None:
    emu = _estate(clock)

    async def body() -> None:
        async with served(emu) as s:
            _, one, _ = await _query(s, "Resources", ["sub-1"])
            assert _names(one) == ["app-1", "app-2", "app-3", "app-4", "app-5"]
            _, two, _ = await _query(s, "Resources", ["SUB-2"])
            assert _names(two) == ["Billing-Worker", "app-6"]
            _, none, _ = await _query(s, "Resources", ["sub-9"])
            assert none["data"] == [] and none["totalRecords"] == 0
            # no subscriptions: every subscription the caller can read, as in Azure
            async with s.post(GRAPH, params=API, json={"query": "Resources"}) as r:
                assert r.status == 200 and _names(await r.json()) == ALL
            async with s.post(GRAPH, params=API, json={"query": 1}) as r:
                assert r.status == 400

    anyio.run(body)


FLEET_2500 = """\
name: big
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: sub-1
resources:
  - type: containerApp
    count: 2500
    name: "app-{i:04d}"
    resourceGroup: rg
    location: eastus
    containers: [{name: c, image: i:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
"""


def test_paging_with_the_skip_token(clock: ManualClock) -> None:
    emu = _estate(clock, FLEET_2500)
    query = "Resources | where type =~ 'microsoft.app/containerapps' | project id, name"

    async def body() -> None:
        async with served(emu) as s:
            status, default, _ = await _query(s, query, ["sub-1"])
            assert status == 200  # without $top, 100 rows a page (Microsoft's default)
            assert (default["totalRecords"], default["count"]) == (2500, 100)
            assert "$skipToken" in default
            status, first, _ = await _query(s, query, ["sub-1"], **{"$top": 1000})
            assert (first["totalRecords"], first["count"]) == (2500, 1000)  # the largest
            seen = [r["name"] for r in first["data"]]
            token = first["$skipToken"]
            while token:
                options = {"$skipToken": token, "$top": 1000}
                status, page, _ = await _query(s, query, ["sub-1"], **options)
                assert status == 200 and page["totalRecords"] == 2500
                seen += [r["name"] for r in page["data"]]
                token = page.get("$skipToken")
            assert len(seen) == len(set(seen)) == 2500
            _, small, _ = await _query(s, query, ["sub-1"], **{"$top": 300, "$skip": 2400})
            assert small["count"] == 100 and "$skipToken" not in small

            # a token is bound to its query and scope
            other = "Resources | project id, name"
            status, refused, _ = await _query(
                s, other, ["sub-1"], **{"$skipToken": first["$skipToken"]}
            )
            assert status == 400, refused
            assert "skipToken" in refused["error"]["details"][0]["message"]
            status, _, _ = await _query(s, query, ["sub-2"], **{"$skipToken": first["$skipToken"]})
            assert status == 400
            status, _, _ = await _query(s, query, ["sub-1"], **{"$skipToken": "not-a-token"})
            assert status == 400
            status, _, _ = await _query(s, query, ["sub-1"], **{"$top": 1001})
            assert status == 400

    anyio.run(body)


def test_an_expired_skip_token_is_a_400_not_a_new_answer(clock: ManualClock) -> None:
    """A token whose result has been let go is refused, as Azure refuses an expired one:
    answering it from a fresh evaluation would hand the caller a page of another result."""
    emu = _estate(clock, FLEET_2500, graph_quota=None)
    query = "Resources | where type =~ 'microsoft.app/containerapps' | project id, name"

    async def body() -> None:
        async with served(emu) as s:
            _, first, _ = await _query(s, query, ["sub-1"], **{"$top": 1000})
            for _ in range(SNAPSHOTS_KEPT):  # newer results push the first one out
                await _query(s, query, ["sub-1"], **{"$top": 1})
            options = {"$skipToken": first["$skipToken"], "$top": 1000}
            status, refused, _ = await _query(s, query, ["sub-1"], **options)
            assert status == 400 and refused["error"]["code"] == "BadRequest"
            detail = refused["error"]["details"][0]
            assert detail["code"] == "InvalidRequestContent" and "expired" in detail["message"]

    anyio.run(body)


@pytest.mark.parametrize(("shift", "repeated", "missing"), [(1, 1, 0), (-1, 0, 1), (2, 2, 0)])
def test_graph_drift_shifts_later_pages(
    clock: ManualClock, shift: int, repeated: int, missing: int
) -> None:
    """Resources created or deleted between pages move the rows of later pages: one read
    twice or never, and a totalRecords that no longer agrees with the first page's."""
    emu = _estate(clock, FLEET_2500, graph_quota=None)
    query = "Resources | where type =~ 'microsoft.app/containerapps' | project id | order by id asc"

    async def body() -> None:
        async with served(emu) as s:
            emu.set_fault("graph-drift", duration_s=60, shift=shift)
            _, first, _ = await _query(s, query, ["sub-1"], **{"$top": 1000})
            assert first["totalRecords"] == 2500  # a first page is never shifted
            seen = [r["id"] for r in first["data"]]
            token = first["$skipToken"]
            while token:
                options = {"$skipToken": token, "$top": 1000}
                status, page, _ = await _query(s, query, ["sub-1"], **options)
                assert status == 200 and page["totalRecords"] == 2500 + shift
                seen += [r["id"] for r in page["data"]]
                token = page.get("$skipToken")
            assert len(seen) - len(set(seen)) == repeated * 2  # at each of the 2 boundaries
            assert 2500 - len(set(seen)) == missing * 2

    anyio.run(body)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("Resources | summarize count() by type", "'summarize'"),
        ("Resources | extend n = tolower(name)", "'extend'"),
        ("Resources | project-away tags", "'project-away'"),
        ("Resources | where tolower(name) == 'x'", "'tolower'"),
        ("Resources | join (ResourceContainers) on subscriptionId", "'join'"),
        ("ResourceContainers | where type == 'x'", "'ResourceContainers'"),
        ("Resources | where name == 'x' | mv-expand tags", "'mv-expand'"),
        ("Resources | where name between ('a' .. 'b')", "'between'"),
        ("Resources | where nonsense == 'x'", "'nonsense'"),
        ("Resources | project n = name", "'n'"),
        ("Resources | where name == 'unterminated", "unterminated string"),
        ("Resources | where name matches regex '('", "regular expression"),
        ("Resources | where (name == 'x'", "')'"),
        ("Resources | order by name nulls last", "nulls"),
    ],
)
def test_unsupported_syntax_is_a_400_naming_it(clock: ManualClock, query: str, named: str) -> None:
    emu = _estate(clock)

    async def body() -> None:
        async with served(emu) as s:
            status, answer, _ = await _query(s, query)
            assert status == 400
            assert answer["error"]["code"] == "BadRequest"
            detail = answer["error"]["details"][0]
            assert detail["code"] == "InvalidQuery" and named in detail["message"]

    anyio.run(body)


def test_quota_headers_429_and_reset(clock: ManualClock) -> None:
    emu = _estate(clock)

    async def body() -> None:
        async with served(emu) as s:
            remaining = []
            for _ in range(15):
                status, _, headers = await _query(s, "Resources")
                assert status == 200
                remaining.append(int(headers["x-ms-user-quota-remaining"]))
                assert headers["x-ms-user-quota-resets-after"] == "00:00:05"  # time stands still
            assert remaining == list(range(14, -1, -1))
            status, answer, headers = await _query(s, "Resources")
            assert status == 429 and answer["error"]["code"] == "RateLimiting"
            assert headers["x-ms-user-quota-remaining"] == "0"
            assert headers["x-ms-user-quota-resets-after"] == "00:00:05"
            assert "Retry-After" not in headers  # not one of Resource Graph's headers
            # another user (another token) has a quota of its own
            async with s.post(
                GRAPH,
                params=API,
                json={"subscriptions": ["sub-1"], "query": "Resources"},
                headers={"Authorization": "Bearer someone-else"},
            ) as r:
                assert r.status == 200 and r.headers["x-ms-user-quota-remaining"] == "14"
            clock.advance(seconds=3)
            status, _, headers = await _query(s, "Resources")
            assert status == 429 and "Retry-After" not in headers
            assert headers["x-ms-user-quota-resets-after"] == "00:00:02"
            clock.advance(seconds=2)  # the window has reset
            status, _, headers = await _query(s, "Resources")
            assert status == 200 and headers["x-ms-user-quota-remaining"] == "14"

    anyio.run(body)


def test_graph_faults(clock: ManualClock) -> None:
    emu = _estate(clock, graph_quota=None)

    async def body() -> None:
        async with served(emu) as s:
            for _ in range(20):  # no quota: never throttled
                status, _, headers = await _query(s, "Resources")
                assert status == 200 and "x-ms-user-quota-remaining" in headers
            emu.set_fault("graph-throttle", duration_s=60)
            status, answer, headers = await _query(s, "Resources")
            assert status == 429 and headers["x-ms-user-quota-remaining"] == "0"
            assert "Retry-After" not in headers and "x-ms-user-quota-resets-after" in headers
            clock.advance(seconds=60)
            emu.set_fault("graph-error", duration_s=60)
            status, answer, headers = await _query(s, "Resources")
            assert status == 500 and answer["error"]["code"] == "InternalServerError"
            assert "x-ms-user-quota-remaining" in headers
            clock.advance(seconds=60)
            status, _, _ = await _query(s, "Resources")
            assert status == 200
            emu.set_fault("graph-truncated", duration_s=60)
            status, answer, _ = await _query(s, "Resources", **{"$top": 2})
            assert status == 200 and answer["resultTruncated"] == "true"
            assert answer["count"] == 2 < answer["totalRecords"] and "$skipToken" not in answer
            status, answer, _ = await _query(s, "Resources")  # one page: nothing to cut
            assert answer["resultTruncated"] == "false" and answer["count"] == len(ALL)

    anyio.run(body)


def test_api_versions_and_auth(clock: ManualClock) -> None:
    emu = _estate(clock)
    body_json = {"subscriptions": ["sub-1"], "query": "Resources"}

    async def body() -> None:
        async with served(emu) as s:
            for version, expected in [
                ("2021-03-01", 200),
                ("2024-04-01", 200),
                ("2020-04-01-preview", 400),
            ]:
                async with s.post(GRAPH, params={"api-version": version}, json=body_json) as r:
                    assert r.status == expected, version
        async with served(emu, auth=False) as s, s.post(GRAPH, params=API, json=body_json) as r:
            assert r.status == 401

    anyio.run(body)


def test_redis_and_cosmos_rows(make_emulator: Make) -> None:
    async def rows(scenario: str, kind: str) -> list[dict[str, Any]]:
        emu = make_emulator(scenario)
        sub = emu.scenario.subscription
        async with served(emu) as s:
            status, answer, _ = await _query(s, f"Resources | where type == '{kind}'", [sub])
            assert status == 200
            return list(answer["data"])

    async def body() -> None:
        (cache,) = await rows("redis-overload", "microsoft.cache/redis")
        assert "/providers/Microsoft.Cache/Redis/" in cache["id"]
        assert cache["properties"]["provisioningState"] == "Succeeded"
        accounts = await rows("cosmos-throttling", "microsoft.documentdb/databaseaccounts")
        assert accounts and all("/databaseAccounts/" in a["id"] for a in accounts)
        assert all(a["tags"] == {} for a in accounts)

    anyio.run(body)
