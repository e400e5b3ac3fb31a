"""Container Apps ARM routes over real HTTP: shape, merge patch, LRO, restarts, faults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from controller.emulator import Emulator

from .support import ACA, API_APP, AUTH, ManualClock, served

Make = Callable[..., Emulator]

SCALE_2 = {"properties": {"template": {"scale": {"minReplicas": 2, "maxReplicas": 10}}}}


def run(fn: Callable[[], Any]) -> None:
    anyio.run(fn)


async def _finish(session: Any, op_url: str) -> list[dict[str, Any]]:
    """Poll an async-operation URL until it is terminal; return every status body."""
    bodies = []
    for _ in range(10):
        async with session.get(op_url) as r:
            assert r.status == 200
            bodies.append(await r.json())
        if bodies[-1]["status"] != "InProgress":
            break
    return bodies


def test_get_app_shape(make_emulator: Make) -> None:
    async def body() -> None:
        async with served(make_emulator()) as s, s.get(API_APP, params=ACA) as r:
            assert r.status == 200
            app = await r.json()
            assert r.headers["x-ms-ratelimit-remaining-subscription-reads"]
        assert app["id"] == API_APP
        assert app["type"] == "Microsoft.App/containerApps"
        assert app["location"] == "eastus"
        props = app["properties"]
        assert props["provisioningState"] == "Succeeded"
        assert props["latestRevisionName"] == "agentstudio-api--r1"
        assert props["latestReadyRevisionName"] == "agentstudio-api--r1"
        assert props["configuration"]["activeRevisionsMode"] == "Single"
        assert props["template"]["containers"] == [
            {
                "name": "api",
                "image": "agentstudio/api:1.4.2",
                "resources": {"cpu": 0.5, "memory": "1Gi"},
            }
        ]
        assert props["template"]["scale"] == {"minReplicas": 1, "maxReplicas": 10, "rules": []}

    run(body)


def test_auth_api_version_and_not_found(make_emulator: Make) -> None:
    async def body() -> None:
        async with served(make_emulator(), auth=False) as s:
            async with s.get(API_APP, params=ACA) as r:
                assert r.status == 401
            async with s.get(API_APP, params=ACA, headers={"Authorization": "Basic x"}) as r:
                assert r.status == 401
            async with s.get(API_APP, headers=AUTH) as r:
                assert r.status == 400
                assert (await r.json())["error"]["code"] == "MissingApiVersionParameter"
            async with s.get(API_APP, params={"api-version": "2099-01-01"}, headers=AUTH) as r:
                assert r.status == 200  # unknown versions are served (and logged)
            async with s.get(
                API_APP.replace("agentstudio-api", "nope"), params=ACA, headers=AUTH
            ) as r:
                assert r.status == 404
                assert (await r.json())["error"]["code"] == "ResourceNotFound"
            async with s.get(API_APP.upper(), params=ACA, headers=AUTH) as r:
                assert r.status == 200  # Azure paths are case-insensitive

    run(body)


def test_patch_is_a_merge_patch_applied_when_the_operation_completes(
    make_emulator: Make, clock: ManualClock
) -> None:
    emu = make_emulator(lro_polls=2)

    async def body() -> None:
        async with served(emu) as s:
            async with s.patch(API_APP, params=ACA, json=SCALE_2) as r:
                assert r.status == 202
                assert "Retry-After" not in r.headers
                op_url = r.headers["Azure-AsyncOperation"]
            assert op_url.startswith(str(s._base_url))
            assert (
                "/providers/Microsoft.App/locations/eastus/containerappOperationResults/" in op_url
            )
            assert "api-version=2026-07-01" in op_url
            assert emu.writes == 1
            async with s.get(API_APP, params=ACA) as r:  # not applied yet
                assert (await r.json())["properties"]["template"]["scale"]["minReplicas"] == 1
            bodies = await _finish(s, op_url)
            assert [b["status"] for b in bodies] == ["InProgress", "InProgress", "Succeeded"]
            assert bodies[0]["id"].endswith(bodies[0]["name"])
            async with s.get(API_APP, params=ACA) as r:
                app = await r.json()
        tpl = app["properties"]["template"]
        assert tpl["scale"]["minReplicas"] == 2
        assert tpl["containers"][0]["image"] == "agentstudio/api:1.4.2"  # untouched by the patch
        state = emu.state()["resources"][API_APP]
        # a new revision: provisioned while the old one still runs, then it takes over
        assert state["latestRevision"] != state["latestReadyRevision"] == "agentstudio-api--r1"
        assert state["replicas"] == 1 + 2
        clock.advance(seconds=30)
        state = emu.state()["resources"][API_APP]
        assert state["latestReadyRevision"] == state["latestRevision"]
        assert state["replicas"] == 2

    run(body)


def test_an_accepted_patch_lands_without_being_polled(
    make_emulator: Make, clock: ManualClock
) -> None:
    """Azure applies a change after its 202 whether or not the client polls: a controller
    that crashed right after sending it finds the change landed (at the operation's end,
    with systemData and ETag from then), and a late poll reports it Succeeded."""
    emu = make_emulator(lro_polls=3, lro_retry_after=10)  # ends 30 s after it was accepted

    async def body() -> None:
        async with served(emu) as s:
            async with s.get(API_APP, params=ACA) as r:
                etag = r.headers["ETag"]
            async with s.patch(API_APP, params=ACA, json=SCALE_2) as r:
                assert r.status == 202
                op_url = r.headers["Azure-AsyncOperation"]
            clock.advance(seconds=29)
            async with s.get(API_APP, params=ACA) as r:  # still running: not there yet
                assert (await r.json())["properties"]["template"]["scale"]["minReplicas"] == 1
                assert r.headers["ETag"] == etag
            clock.advance(minutes=10)  # nobody polled meanwhile
            async with s.get(API_APP, params=ACA) as r:
                app = await r.json()
                assert r.headers["ETag"] != etag
            assert app["properties"]["template"]["scale"]["minReplicas"] == 2
            assert app["systemData"]["lastModifiedAt"] == "2026-01-01T00:00:30Z"
            [status] = await _finish(s, op_url)
            assert status["status"] == "Succeeded"
            assert status["endTime"] == "2026-01-01T00:00:30Z"
        assert emu.state()["resources"][API_APP]["minReplicas"] == 2

    run(body)


def test_patch_replaces_the_container_list_whole(make_emulator: Make) -> None:
    emu = make_emulator()
    patch = {
        "properties": {
            "template": {
                "containers": [
                    {
                        "name": "api",
                        "image": "agentstudio/api:1.4.2",
                        "resources": {"cpu": 1.0, "memory": "2Gi"},
                    }
                ]
            }
        },
        "tags": {"owner": "sre"},
    }

    async def body() -> None:
        async with served(emu) as s:
            async with s.patch(API_APP, params=ACA, json=patch) as r:
                assert r.status == 202
                await _finish(s, r.headers["Azure-AsyncOperation"])
            async with s.get(API_APP, params=ACA) as r:
                app = await r.json()
        assert app["properties"]["template"]["containers"][0]["resources"] == {
            "cpu": 1.0,
            "memory": "2Gi",
        }
        assert app["properties"]["template"]["scale"]["minReplicas"] == 1
        assert app["tags"] == {"owner": "sre"}

    run(body)


def _scale(**scale: int) -> dict[str, Any]:
    return {"properties": {"template": {"scale": scale}}}


def _container(**container: Any) -> dict[str, Any]:
    return {"properties": {"template": {"containers": [{"name": "api", **container}]}}}


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        (_scale(minReplicas=11, maxReplicas=10), "ContainerAppInvalidScaleSpec"),
        (_scale(minReplicas=-1), "ContainerAppInvalidScaleSpec"),
        (_scale(maxReplicas=1001), "ContainerAppInvalidScaleSpec"),
        (
            _container(resources={"cpu": 1.0, "memory": "2Gi"}),
            "InvalidParameterValueInContainerTemplate",
        ),
        (
            _container(image="i", resources={"cpu": 1.0, "memory": "1Gi"}),
            "ContainerAppInvalidResourceTotal",
        ),
        (
            _container(image="i", resources={"cpu": 0.3, "memory": "0.6Gi"}),
            "ContainerAppInvalidResourceTotal",
        ),
        ([1, 2], "InvalidRequestContent"),
    ],
)
def test_patch_validation(make_emulator: Make, patch: Any, code: str) -> None:
    emu = make_emulator()

    async def body() -> None:
        async with served(emu) as s, s.patch(API_APP, params=ACA, json=patch) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == code
        assert emu.writes == 0

    run(body)


def test_lro_fail_fault_fails_the_next_operation_only(make_emulator: Make) -> None:
    emu = make_emulator()
    emu.set_fault("lro-fail")

    async def body() -> None:
        async with served(emu) as s:
            async with s.patch(API_APP, params=ACA, json=SCALE_2) as r:
                assert r.status == 202
                bodies = await _finish(s, r.headers["Azure-AsyncOperation"])
            assert bodies[-1]["status"] == "Failed"
            assert bodies[-1]["error"]["code"] == "InternalError"
            assert emu.state()["resources"][API_APP]["minReplicas"] == 1  # not applied
            async with s.patch(API_APP, params=ACA, json=SCALE_2) as r:
                bodies = await _finish(s, r.headers["Azure-AsyncOperation"])
            assert bodies[-1]["status"] == "Succeeded"
        assert emu.writes == 2
        assert emu.state()["resources"][API_APP]["minReplicas"] == 2

    run(body)


def test_revisions_and_restart(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()
    clock.set(3)

    async def body() -> None:
        async with served(emu) as s:
            async with s.get(f"{API_APP}/revisions", params=ACA) as r:
                listing = await r.json()
            assert listing["nextLink"] is None
            by_name = {rev["name"]: rev for rev in listing["value"]}
            assert set(by_name) == {"agentstudio-api--r1", "agentstudio-api--r0"}
            active = by_name["agentstudio-api--r1"]
            assert active["type"] == "Microsoft.App/containerApps/revisions"
            assert active["id"] == f"{API_APP}/revisions/agentstudio-api--r1"
            props = active["properties"]
            assert props["active"] is True and props["replicas"] == 1
            assert props["trafficWeight"] == 100 and props["healthState"] == "Healthy"
            assert (
                props["runningState"] == "Running" and props["provisioningState"] == "Provisioned"
            )
            assert props["createdTime"].endswith("Z")
            assert by_name["agentstudio-api--r0"]["properties"]["active"] is False

            async with s.get(f"{API_APP}/revisions/agentstudio-api--r1", params=ACA) as r:
                assert (await r.json())["name"] == "agentstudio-api--r1"
            async with s.get(f"{API_APP}/revisions/nope", params=ACA) as r:
                assert r.status == 404

            async with s.post(f"{API_APP}/revisions/agentstudio-api--r0/restart", params=ACA) as r:
                assert r.status == 400
            assert emu.writes == 0
            async with s.post(f"{API_APP}/revisions/agentstudio-api--r1/restart", params=ACA) as r:
                assert r.status == 200
            assert emu.writes == 1
            async with s.get(f"{API_APP}/revisions/agentstudio-api--r1/replicas", params=ACA) as r:
                replicas = await r.json()
            assert replicas["value"][0]["properties"]["containers"][0]["restartCount"] == 1
        assert emu.state()["resources"][API_APP]["restarts"] == 1

    run(body)


def test_writes_count_only_accepted_changes(make_emulator: Make) -> None:
    emu = make_emulator()

    async def body() -> None:
        async with served(emu) as s:
            async with s.get(API_APP, params=ACA):
                pass
            async with s.patch(
                API_APP,
                params=ACA,
                json={"properties": {"template": {"scale": {"minReplicas": 99, "maxReplicas": 3}}}},
            ):
                pass
            async with s.patch(API_APP, params=ACA, json=SCALE_2) as r:
                await _finish(s, r.headers["Azure-AsyncOperation"])
            async with s.post(f"{API_APP}/revisions/agentstudio-api--r1/restart", params=ACA):
                pass
            async with s.get("/_emulator/state") as r:
                assert (await r.json())["writes"] == 2
            async with s.get("/_emulator/requests") as r:
                log = await r.json()
        assert emu.writes == 2
        patches = [e for e in log if e["method"] == "PATCH"]
        assert patches[-1]["body"] == SCALE_2
        assert patches[-1]["path"] == API_APP
        assert patches[-1]["query"] == ACA
        assert not any(e["path"].startswith("/_emulator") for e in log)

    run(body)


def test_arm_throttle_and_error_faults(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()

    async def body() -> None:
        async with served(emu) as s:
            emu.set_fault("arm-throttle", duration_s=60)
            async with s.get(API_APP, params=ACA) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == "1"
                assert r.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
                assert (await r.json())["error"]["code"] == "TooManyRequests"
            async with s.patch(API_APP, params=ACA, json=SCALE_2) as r:
                assert r.status == 429
            assert emu.writes == 0
            clock.advance(seconds=61)  # the fault has expired
            async with s.get(API_APP, params=ACA) as r:
                assert r.status == 200
            emu.set_fault("arm-error")
            async with s.get(f"{API_APP}/revisions", params=ACA) as r:
                assert r.status == 500
                assert (await r.json())["error"]["code"] == "InternalServerError"
            emu.clear_faults()
            async with s.get(API_APP, params=ACA) as r:
                assert r.status == 200

    run(body)


def test_etag_changes_with_each_landed_change_and_if_match_guards_writes(
    make_emulator: Make,
) -> None:
    """GET serves an ETag and systemData; a PATCH with a stale If-Match is 412 and changes
    nothing; a current one (or none) is accepted; a landed change bumps both."""
    emu = make_emulator()

    async def body() -> None:
        async with served(emu) as s:
            async with s.get(API_APP, params=ACA) as r:
                etag = r.headers["ETag"]
                first = (await r.json())["systemData"]
            stale = '"00000000-0000-0100-0000-000000000000"'
            async with s.patch(API_APP, params=ACA, json=SCALE_2, headers={"If-Match": stale}) as r:
                assert r.status == 412
                assert (await r.json())["error"]["code"] == "PreconditionFailed"
            assert emu.writes == 0
            async with s.patch(API_APP, params=ACA, json=SCALE_2, headers={"If-Match": etag}) as r:
                assert r.status == 202
                await _finish(s, r.headers["Azure-AsyncOperation"])
            async with s.get(API_APP, params=ACA) as r:
                assert r.headers["ETag"] != etag
                now = (await r.json())["systemData"]
            assert now["lastModifiedAt"] > first["lastModifiedAt"]
            assert now["lastModifiedByType"] == "Application"

    run(body)
