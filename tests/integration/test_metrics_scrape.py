"""The controller's /metrics scraped by a real Prometheus after a scenario; PromQL finds
the series a dashboard and the alert rules use; ``promtool check metrics`` is clean."""

from __future__ import annotations

import random
import re
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import anyio
import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from controller.server import make_app, serving
from tests import prometheus
from tests.conftest import START, emulator_settings, make_policy

pytestmark = pytest.mark.anyio
DEPLOY = Path(__file__).parents[2] / "deploy"
WAIT = 30.0  # seconds, at most, for Prometheus' first scrapes (real time: an external server)


def promtool() -> str:
    binary = prometheus.prometheus_binary()
    tool = Path(binary).with_name("promtool") if binary else None
    if tool is None or not tool.exists():
        pytest.skip("promtool is not installed (Debian's prometheus package)")
    return str(tool)


async def query(session: aiohttp.ClientSession, url: str, promql: str) -> list[dict[str, object]]:
    params = {"query": promql, "time": f"{time.time():.3f}"}
    async with session.get(f"{url}/api/v1/query", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_what_a_scenario_did(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    if prometheus.prometheus_binary() is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    _, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    loaded = [LoadedPolicy(make_policy(), "test", 1)]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(4)) as runtime,
        serving(make_app(runtime.loop, clock, runtime.metrics), "127.0.0.1", 0) as server,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=14), sleepers=1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server}/metrics") as response:
                exposition = await response.text()
            checked = await anyio.run_process(
                [promtool(), "check", "metrics"], input=exposition.encode(), check=False
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            target = server.removeprefix("http://")
            with prometheus.prometheus(tmp_path, target) as url:
                with anyio.fail_after(WAIT):
                    while not await query(session, url, "remediator_build_info"):  # noqa: ASYNC110 (an external server: nothing to wait on but its answers)
                        await anyio.sleep(0.05)
                acted = await query(
                    session,
                    url,
                    'remediator_actions_total{policy="api-cpu",action="scaleOut",outcome="succeeded"}',
                )
                assert float(acted[0]["value"][1]) >= 1  # type: ignore[index]
                writes = await query(
                    session,
                    url,
                    'sum(remediator_azure_requests_total{operation="Microsoft.App/containerApps/write"})',
                )
                assert float(writes[0]["value"][1]) >= 1  # type: ignore[index]
                for promql in (
                    'remediator_objective_state{objective="cpu"}',
                    'remediator_budget_remaining{scope="target"}',
                    "remediator_audit_write_duration_seconds_count > 0",
                    "remediator_loop_lag_seconds",
                    "remediator_leader == 1",
                    'remediator_verdicts_total{state="breach"} > 0',
                    "remediator_reconcile_duration_seconds_count > 0",
                ):
                    assert await query(session, url, promql), promql
        tg.cancel_scope.cancel()
    # every series the alerts and the dashboard use is one the controller exports
    exported = set()
    for name, kind in re.findall(r"^# TYPE (remediator_\w+) (\w+)$", exposition, re.M):
        exported.add(f"{name.removesuffix('_total')}_total" if kind == "counter" else name)
    used = set()
    for file in (
        DEPLOY / "prometheus" / "remediator-alerts.yml",
        DEPLOY / "grafana" / "remediator-dashboard.json",
    ):
        used |= set(re.findall(r"remediator_[a-z_]+", file.read_text()))
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert used - exported == set()
