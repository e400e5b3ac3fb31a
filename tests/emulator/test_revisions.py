"""Container Apps revisions as Azure makes them: every template change (scale included)
is a new revision, provisioned before it serves; traffic on ``latestRevision`` follows it,
pinned traffic does not; each revision serves load with its own replicas and build."""

from __future__ import annotations

from typing import Any

import aiohttp

from .support import ACA, API_APP, ManualClock, served
from .test_arm import Make, _finish, run

SCALE_3 = {"properties": {"template": {"scale": {"minReplicas": 3}}}}


async def patch(s: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    async with s.patch(API_APP, params=ACA, json=body) as r:
        assert r.status == 202, await r.text()
        await _finish(s, r.headers["Azure-AsyncOperation"])


async def revisions(s: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    async with s.get(f"{API_APP}/revisions", params=ACA) as r:
        return {v["name"]: v["properties"] for v in (await r.json())["value"]}


async def app(s: aiohttp.ClientSession) -> dict[str, Any]:
    async with s.get(API_APP, params=ACA) as r:
        body: dict[str, Any] = (await r.json())["properties"]
        return body


def test_single_mode_a_scale_is_a_new_revision_that_takes_over_once_ready(
    make_emulator: Make, clock: ManualClock
) -> None:
    """minReplicas 1 → 3: a new revision, provisioned while the old one serves (both
    run); ready 30 s later, it serves alone and the old one is deactivated."""
    emu = make_emulator("cpu-spike")
    clock.set(6)

    async def body() -> None:
        async with served(emu) as s:
            await patch(s, SCALE_3)
            props = await app(s)
            new = props["latestRevisionName"]
            assert new.startswith("agentstudio-api--") and new != "agentstudio-api--r1"
            assert props["latestReadyRevisionName"] == "agentstudio-api--r1"
            listed = await revisions(s)
            assert listed[new]["provisioningState"] == "Provisioning"
            assert listed[new]["trafficWeight"] == 0
            assert listed["agentstudio-api--r1"]["trafficWeight"] == 100
            assert listed[new]["template"]["scale"]["minReplicas"] == 3
            assert listed["agentstudio-api--r1"]["template"]["scale"]["minReplicas"] == 1
            clock.advance(seconds=30)
            listed = await revisions(s)
            assert (listed[new]["active"], listed[new]["trafficWeight"]) == (True, 100)
            assert not listed["agentstudio-api--r1"]["active"]
            assert (await app(s))["latestReadyRevisionName"] == new

    run(body)
    clock.set(8)
    # the metrics of the minutes after: the load on 3 replicas (0.8 cores on 1.5)
    assert emu.state()["resources"][API_APP]["cpuPercent"] < 60


def test_pinned_traffic_stays_and_a_new_revision_gets_none(
    make_emulator: Make, clock: ManualClock
) -> None:
    """Multiple mode after a rollback: traffic pinned to r1. A scale makes a revision
    from the latest template — r2's build, the bad one — that gets 0 %: what serves users
    is unchanged, and so is their error rate."""
    emu = make_emulator("bad-deploy")
    clock.set(1)
    app_id = API_APP

    async def body() -> None:
        async with served(emu) as s:
            pin = {"revisionName": "agentstudio-api--r1", "weight": 100}
            await patch(s, {"properties": {"configuration": {"ingress": {"traffic": [pin]}}}})
            await patch(s, SCALE_3)
            clock.advance(minutes=2)
            props = await app(s)
            new = props["latestRevisionName"]
            assert props["latestReadyRevisionName"] == new  # ready, and yet idle
            listed = await revisions(s)
            assert listed[new]["trafficWeight"] == 0 and listed[new]["active"]
            assert listed["agentstudio-api--r1"]["trafficWeight"] == 100
            assert listed[new]["template"]["containers"][0]["image"] == "agentstudio/api:1.5.0"

    run(body)
    state = emu.state()["resources"][app_id]
    assert state["traffic"] == {"agentstudio-api--r1": 100}
    assert state["errorRatePercent"] == 0.2  # r1's; the new revision serves nobody


def test_traffic_on_latest_revision_follows_a_new_revision_with_its_build(
    make_emulator: Make, clock: ManualClock
) -> None:
    """latestRevision: true carries the traffic to the scale's revision once it is
    ready; built from the same images, it fails as often as the one it was made from."""
    emu = make_emulator("bad-deploy-then-spike")
    clock.set(1)

    async def body() -> None:
        async with served(emu) as s:
            traffic = (await app(s))["configuration"]["ingress"]["traffic"]
            assert traffic == [{"latestRevision": True, "weight": 100}]
            await patch(s, SCALE_3)
            clock.advance(minutes=2)
            new = (await app(s))["latestRevisionName"]
            assert (await revisions(s))[new]["trafficWeight"] == 100

    run(body)
    state = emu.state()["resources"][API_APP]
    assert list(state["traffic"]) == [state["latestRevision"]]
    assert state["errorRatePercent"] == 6.0  # the same build as r2: the same faults


def test_only_a_restart_of_the_serving_revision_heals_the_app(
    make_emulator: Make, clock: ManualClock
) -> None:
    """hung-agent: a deactivated revision cannot be restarted (400) and the app stays hung;
    restarting the revision that serves heals it."""
    emu = make_emulator("hung-agent")
    clock.set(12)
    agents = API_APP.replace("agentstudio-api", "agentstudio-agents")

    async def body() -> None:
        async with served(emu) as s:
            async with s.get(f"{agents}/revisions", params=ACA) as r:
                listed = {v["name"]: v["properties"] for v in (await r.json())["value"]}
            serving = [n for n, p in listed.items() if p["trafficWeight"] == 100]
            idle = [n for n, p in listed.items() if not p["active"]]
            assert serving and idle
            async with s.post(f"{agents}/revisions/{idle[0]}/restart", params=ACA) as r:
                assert r.status == 400  # an inactive revision cannot be restarted
            assert emu.state()["resources"][agents]["hung"]
            async with s.post(f"{agents}/revisions/{serving[0]}/restart", params=ACA) as r:
                assert r.status == 200
            assert not emu.state()["resources"][agents]["hung"]

    run(body)
