"""Azure Monitor metrics routes over real HTTP: shapes, arithmetic, history, batch, faults."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from controller.emulator import Emulator

from .support import ACA, API_APP, MON, SUB, WORKER, ManualClock, metric_params, minutes, served

Make = Callable[..., Emulator]
METRICS = f"{API_APP}/providers/Microsoft.Insights/metrics"
BATCH = f"/subscriptions/{SUB}/metrics:getBatch"


def run(fn: Callable[[], Any]) -> None:
    anyio.run(fn)


async def _get(s: aiohttp.ClientSession, path: str, params: dict[str, str]) -> dict[str, Any]:
    async with s.get(path, params=params) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


def _values(body: dict[str, Any], agg: str = "average") -> list[float]:
    return [p[agg] for p in body["value"][0]["timeseries"][0]["data"]]


async def _scale(s: aiohttp.ClientSession, replicas: int) -> None:
    patch = {"properties": {"template": {"scale": {"minReplicas": replicas}}}}
    async with s.patch(API_APP, params=ACA, json=patch) as r:
        op = r.headers["Azure-AsyncOperation"]
    for _ in range(5):
        async with s.get(op) as r:
            if (await r.json())["status"] == "Succeeded":
                return
    raise AssertionError("operation did not finish")


def test_single_resource_shape(make_emulator: Make, clock: ManualClock) -> None:
    clock.set(3.5)

    async def body() -> None:
        async with served(make_emulator()) as s:
            params = metric_params("CpuPercentage,Replicas", 0, 5, aggregation="Average,Maximum")
            params["$filter"] = "revisionName eq '*'"
            got = await _get(s, METRICS, params)
        assert got["timespan"] == f"{minutes(0)}/{minutes(5)}"
        assert got["interval"] == "PT1M"
        assert got["resourceregion"] == "eastus"
        assert isinstance(got["cost"], int)
        cpu, replicas = got["value"]
        assert cpu["id"] == f"{METRICS}/CpuPercentage"
        assert cpu["type"] == "Microsoft.Insights/metrics"
        assert cpu["name"] == {"value": "CpuPercentage", "localizedValue": "CpuPercentage"}
        assert cpu["unit"] == "Percent" and cpu["errorCode"] == "Success"
        series = cpu["timeseries"][0]
        assert series["metadatavalues"] == [
            {
                "name": {"value": "revisionname", "localizedValue": "revisionname"},
                "value": "agentstudio-api--r1",
            }
        ]
        # only completed minutes: 00:00, 00:01, 00:02 (00:03 is still running at 00:03:30)
        assert [p["timeStamp"] for p in series["data"]] == [minutes(0), minutes(1), minutes(2)]
        assert series["data"][0] == {"timeStamp": minutes(0), "average": 40.0, "maximum": 40.0}
        assert _values({"value": [replicas]}) == [1.0, 1.0, 1.0]

    run(body)


def test_window_before_start_is_full_and_aggregations(make_emulator: Make) -> None:
    async def body() -> None:
        async with served(make_emulator()) as s:
            params = metric_params(
                "CpuPercentage", -5, 0, aggregation="average,minimum,maximum,total,count"
            )
            got = await _get(s, METRICS, params)
        data = got["value"][0]["timeseries"][0]["data"]
        assert len(data) == 5
        point = {"average": 40.0, "minimum": 40.0, "maximum": 40.0, "total": 40.0, "count": 1.0}
        assert data[0] == {"timeStamp": minutes(-5), **point}

    run(body)


def test_cpu_falls_with_replicas_and_history_is_stable(
    make_emulator: Make, clock: ManualClock
) -> None:
    async def body() -> None:
        async with served(make_emulator()) as s:
            clock.set(8)
            before = await _get(s, METRICS, metric_params("CpuPercentage", 3, 8))
            assert _values(before) == [40.0, 100.0, 100.0, 100.0, 100.0]  # demand 0.8 from 4m
            await _scale(s, 2)
            clock.set(10)
            await _scale(s, 3)
            clock.set(11.5)  # (the scenario injects a metrics error from 12m)
            again = await _get(s, METRICS, metric_params("CpuPercentage", 3, 12))
            values = _values(again)
            assert values[:5] == _values(before)  # the past did not change
            # each scale is a new revision, serving from when it is ready (30 s later):
            # minute 8 still ran on 1 replica, minute 10 on 2
            assert values[5:] == [100.0, 80.0, 80.0]
            usage = await _get(
                s, METRICS, metric_params("UsageNanoCores", 10, 11, aggregation="Total")
            )
            assert _values(usage, "total") == [pytest.approx(0.8e9)]

    run(body)


def test_leak_grows_and_restart_clears_it(make_emulator: Make, clock: ManualClock) -> None:
    worker_metrics = f"{WORKER}/providers/Microsoft.Insights/metrics"

    async def body() -> None:
        async with served(make_emulator("memory-leak")) as s:
            clock.set(16)
            got = await _get(
                s, worker_metrics, metric_params("MemoryPercentage,WorkingSetBytes", 0, 16)
            )
            mem = _values(got)
            assert mem[0] == pytest.approx(300 / 1024 * 100)
            assert mem[-1] == pytest.approx(
                (300 + 13 * 40) / 1024 * 100
            )  # minute 15: 13 min of leak
            assert all(b >= a for a, b in itertools.pairwise(mem))
            assert got["value"][1]["unit"] == "Bytes"
            async with s.post(
                f"{WORKER}/revisions/agentstudio-worker--r1/restart", params=ACA
            ) as r:
                assert r.status == 200
            clock.set(18)
            after = _values(
                await _get(s, worker_metrics, metric_params("MemoryPercentage", 14, 18))
            )
            assert after[:2] == mem[14:16]  # history kept
            assert after[2] == pytest.approx(300 / 1024 * 100)  # restarted at 16:00
            assert after[3] == pytest.approx(340 / 1024 * 100)  # and leaking again
            restarts = await _get(
                s, worker_metrics, metric_params("RestartCount", 15, 18, aggregation="Total")
            )
            assert _values(restarts, "total") == [0.0, 1.0, 0.0]

    run(body)


def test_coarser_grain_aggregates_minutes(make_emulator: Make, clock: ManualClock) -> None:
    clock.set(10)

    async def body() -> None:
        async with served(make_emulator()) as s:
            params = metric_params(
                "CpuPercentage", 0, 10, interval="PT5M", aggregation="Average,Maximum,Count"
            )
            got = await _get(s, METRICS, params)
        assert got["interval"] == "PT5M"
        data = got["value"][0]["timeseries"][0]["data"]
        assert [p["timeStamp"] for p in data] == [minutes(0), minutes(5)]
        assert data[0]["average"] == pytest.approx((4 * 40 + 100) / 5)
        assert data[0]["maximum"] == 100.0 and data[0]["count"] == 5.0

    run(body)


def test_timespan_forms_and_errors(make_emulator: Make, clock: ManualClock) -> None:
    clock.set(10)

    async def body() -> None:
        async with served(make_emulator()) as s:
            got = await _get(
                s, METRICS, metric_params("CpuPercentage", 0, 0, timespan=f"{minutes(0)}/PT5M")
            )
            assert len(_values(got)) == 5
            got = await _get(s, METRICS, metric_params("CpuPercentage", 0, 0, timespan="PT3M"))
            assert len(_values(got)) == 3
            for bad in (
                metric_params("Bogus", 0, 5),
                metric_params("CpuPercentage", 0, 5, aggregation="median"),
                metric_params("CpuPercentage", 0, 5, interval="PT30S"),
                metric_params("CpuPercentage", 0, 5, timespan="yesterday"),
                metric_params("CpuPercentage", 0, 5, metricnamespace="Microsoft.Web/sites"),
            ):
                async with s.get(METRICS, params=bad) as r:
                    assert r.status == 400, bad
                    assert (await r.json())["error"]["code"] == "BadRequest"
            async with s.get(METRICS, params=metric_params("Bogus", 0, 5)) as r:
                assert "Failed to find metric configuration" in (await r.json())["error"]["message"]
            nowhere = METRICS.replace("agentstudio-api", "nope")
            async with s.get(nowhere, params=metric_params("CpuPercentage", 0, 5)) as r:
                assert r.status == 404

    run(body)


def _batch_params(**extra: str) -> dict[str, str]:
    return {
        **MON,
        "starttime": minutes(0),
        "endtime": minutes(3),
        "interval": "PT1M",
        "metricnamespace": "Microsoft.App/containerApps",
        "metricnames": "CpuPercentage,MemoryPercentage",
        "aggregation": "Average,Maximum",
        **extra,
    }


def test_batch_shape_and_limits(make_emulator: Make, clock: ManualClock) -> None:
    clock.set(5)
    unknown = API_APP.replace("agentstudio-api", "ghost")

    async def body() -> None:
        async with served(make_emulator()) as s:
            params = _batch_params(filter="revisionName eq '*'")
            async with s.post(BATCH, params=params, json={"resourceids": [API_APP, unknown]}) as r:
                assert r.status == 200, await r.text()
                got = await r.json()
            too_many = {"resourceids": [f"{API_APP}{i}" for i in range(51)]}
            async with s.post(BATCH, params=_batch_params(), json=too_many) as r:
                assert r.status == 400
            foreign = {"resourceids": [API_APP.replace(SUB, "other-sub")]}
            async with s.post(BATCH, params=_batch_params(), json=foreign) as r:
                assert r.status == 400
            async with s.post(BATCH, params=_batch_params(), json={"nope": 1}) as r:
                assert r.status == 400
        first, missing = got["values"]
        assert first["starttime"] == minutes(0) and first["endtime"] == minutes(3)
        assert first["interval"] == "PT1M"
        assert first["namespace"] == "microsoft.app/containerapps"
        assert first["resourceregion"] == "eastus" and first["resourceid"] == API_APP
        cpu = first["value"][0]
        assert cpu["id"] == f"{API_APP}/providers/Microsoft.Insights/metrics/CpuPercentage"
        ts = cpu["timeseries"][0]
        assert ts["metadatavalues"][0]["name"]["value"] == "revisionname"
        assert [set(p) for p in ts["data"]] == [{"timeStamp", "average", "maximum"}] * 3
        assert missing["resourceid"] == unknown
        assert missing["value"][0]["errorCode"] == "ResourceNotFound"
        assert missing["value"][0]["timeseries"] == []

    run(body)


def test_metrics_error_null_and_missing_faults(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()
    clock.set(5)

    async def body() -> None:
        async with served(emu) as s:
            params = metric_params("CpuPercentage", 0, 3)
            emu.set_fault("metrics-error", duration_s=60)
            async with s.get(METRICS, params=params) as r:
                assert r.status == 500
                assert (await r.json())["error"]["code"] == "InternalServerError"
            async with s.post(BATCH, params=_batch_params(), json={"resourceids": [API_APP]}) as r:
                assert r.status == 500
            async with s.get(API_APP, params=ACA) as r:
                assert r.status == 200  # ARM routes are unaffected
            emu.clear_faults()
            emu.set_fault("metrics-null")
            got = await _get(s, METRICS, params)
            assert got["value"][0]["timeseries"][0]["data"] == [
                {"timeStamp": minutes(0)},
                {"timeStamp": minutes(1)},
                {"timeStamp": minutes(2)},
            ]
            emu.clear_faults()
            emu.set_fault("metrics-missing")
            got = await _get(s, METRICS, params)
            assert got["value"][0]["timeseries"] == []
            emu.clear_faults()
            assert len(_values(await _get(s, METRICS, params))) == 3

    run(body)


def test_scenario_faults_follow_scenario_time(make_emulator: Make, clock: ManualClock) -> None:
    async def body() -> None:
        async with served(make_emulator("cpu-spike")) as s:  # metrics-error from 15m for 2m
            params = metric_params("CpuPercentage", 8, 13)
            for minute, status in ((14.9, 200), (15, 500), (16.9, 500), (17, 200)):
                clock.set(minute)
                async with s.get(METRICS, params=params) as r:
                    assert r.status == status, minute

    run(body)


def test_metrics_hang_stalls_then_times_out(make_emulator: Make, clock: ManualClock) -> None:
    emu = make_emulator()
    clock.set(5)

    async def body() -> None:
        async with served(emu) as s:
            emu.set_fault("metrics-hang", hang_seconds=0.2)
            with pytest.raises(TimeoutError):
                async with s.get(
                    METRICS,
                    params=metric_params("CpuPercentage", 0, 3),
                    timeout=aiohttp.ClientTimeout(total=0.05),
                ):
                    pass
            async with s.get(METRICS, params=metric_params("CpuPercentage", 0, 3)) as r:
                assert r.status == 504  # the hang ends with a gateway timeout
            emu.set_fault("metrics-hang", hang_seconds=30)
            with pytest.raises(TimeoutError):
                async with s.post(
                    BATCH,
                    params=_batch_params(),
                    json={"resourceids": [API_APP]},
                    timeout=aiohttp.ClientTimeout(total=0.05),
                ):
                    pass
        # leaving serve() released the 30 s hang instead of waiting for it

    started = time.monotonic()
    run(body)
    assert time.monotonic() - started < 5
