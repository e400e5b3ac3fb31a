"""Every labelled series the policies imply exists, at 0, before its first event: a
Prometheus alert on ``increase()`` fires on the first escalation and the first rejected
reload (a series born at 1 shows no increase). Reloads add new policies' series and drop
removed ones'."""

from __future__ import annotations

import copy
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.runtime import Runtime, open_runtime
from controller.server import make_app, serving
from controller.telemetry import DENIED_BY, ESCALATIONS
from tests import prometheus
from tests.conftest import BASE_POLICY, START, emulator_settings

pytestmark = pytest.mark.anyio
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "remediator-alerts.yml"
WAIT = 30.0  # real seconds, at most, for Prometheus to scrape and evaluate (1 s each)
WORKER = BASE_POLICY["target"]["resourceId"].replace("agentstudio-api", "agentstudio-worker")

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exported(runtime: Runtime) -> Series:
    """Every sample on /metrics: (name, sorted labels) → value."""
    text = generate_latest(runtime.metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(series: Series, metric: str, **labels: str) -> float | None:
    return series.get((metric, tuple(sorted(labels.items()))))


def approval_policy() -> dict[str, Any]:
    """The base policy with its first rung waiting for an operator: its first breach
    escalates (reason ``approval``)."""
    policy = copy.deepcopy(BASE_POLICY)
    policy["remediation"] = [
        {"scaleOut": {"step": 1, "maxReplicas": 4, "approval": "required"}},
        {"scaleUp": {"maxCpu": 2.0}},
    ]
    return policy


def worker_policy() -> dict[str, Any]:
    worker = copy.deepcopy(BASE_POLICY)
    worker["metadata"] = {"name": "worker-cpu"}
    worker["target"] = {"type": "containerApp", "resourceId": WORKER}
    return worker


def write(folder: Path, name: str, policy: dict[str, Any]) -> None:
    (folder / name).write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")


def policies_folder(tmp_path: Path, **files: dict[str, Any]) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    for name, policy in files.items():
        write(folder, f"{name}.yaml", policy)
    return folder


async def test_every_series_a_policy_implies_is_there_before_any_pass(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    folder = policies_folder(tmp_path, api=approval_policy())
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    async with open_runtime(settings, clock=clock, rng=random.Random(1)) as runtime:
        series = exported(runtime)  # no pass has run
    p = {"policy": "api-cpu"}
    for reason in ESCALATIONS:
        assert value(series, "remediator_escalations_total", **p, reason=reason) == 0, reason
    for result in ("applied", "rejected"):
        assert value(series, "remediator_policy_reloads_total", result=result) == 0
    for action in ("scaleOut", "scaleUp"):  # per policy and action: bounded, no resource
        for outcome in ("succeeded", "failed", "would-run"):
            labels = {**p, "action": action, "outcome": outcome}
            assert value(series, "remediator_actions_total", **labels) == 0
        for efficacy in ("improved", "not-improved", "failed"):
            labels = {**p, "action": action, "efficacy": efficacy}
            assert value(series, "remediator_action_efficacy_total", **labels) == 0
        for guard in DENIED_BY:
            labels = {**p, "action": action, "decision": "deny", "guard": guard}
            assert value(series, "remediator_decisions_total", **labels) == 0
        allowed = {**p, "action": action, "decision": "allow", "guard": ""}
        assert value(series, "remediator_decisions_total", **allowed) == 0
        assert value(series, "remediator_breaker_state", **p, action=action) == 0  # closed
    for state in ("ok", "pending", "breach", "recovering", "unknown"):
        labels = {**p, "objective": "cpu", "state": state}
        assert value(series, "remediator_verdicts_total", **labels) == 0
    assert value(series, "remediator_objective_state", **p, objective="cpu") == -1  # unknown
    for result in ("ok", "error"):
        assert value(series, "remediator_reconcile_passes_total", **p, result=result) == 0
    assert value(series, "remediator_reconcile_duration_seconds_count") == 0  # every target's
    labels = {"source": "azureMonitor", "quality": "error"}
    assert value(series, "remediator_observations_total", **labels) == 0
    assert value(series, "remediator_paused", **p) == 0
    assert value(series, "remediator_budget_remaining", scope="target", name="api-cpu") == 4
    # no series names a resource: a selector policy's thousands of targets add none
    assert not [key for key in series if any(k in ("target", "resource") for k, _ in key[1])]


async def test_a_reload_adds_new_policies_series_and_drops_removed_ones(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    folder = policies_folder(tmp_path, api=approval_policy())
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(1)) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=8), sleepers=1)
        write(folder, "worker.yaml", worker_policy())
        assert await runtime.reload() is True
        added = exported(runtime)
        (folder / "api.yaml").unlink()
        assert await runtime.reload() is True
        removed = exported(runtime)
        tg.cancel_scope.cancel()
    worker = {"policy": "worker-cpu"}
    assert value(added, "remediator_escalations_total", **worker, reason="needs-human") == 0
    labels = {**worker, "action": "scaleOut", "outcome": "succeeded"}
    assert value(added, "remediator_actions_total", **labels) == 0
    # the api policy had escalated for approval before it was removed
    api = {"policy": "api-cpu", "reason": "approval"}
    assert value(added, "remediator_escalations_total", **api) == 1
    assert not [key for key in removed if ("policy", "api-cpu") in key[1]]
    assert value(removed, "remediator_budget_remaining", scope="target", name="api-cpu") is None
    assert value(removed, "remediator_escalations_total", **worker, reason="needs-human") == 0


async def firing(session: aiohttp.ClientSession, url: str) -> set[str]:
    params = {"query": 'ALERTS{alertstate="firing"}', "time": f"{time.time():.3f}"}
    async with session.get(f"{url}/api/v1/query", params=params) as response:
        body = await response.json()
    return {r["metric"]["alertname"] for r in body["data"]["result"]}


async def scrapes(session: aiohttp.ClientSession, url: str) -> float:
    params = {"query": "count_over_time(remediator_build_info[1m])", "time": f"{time.time():.3f}"}
    async with session.get(f"{url}/api/v1/query", params=params) as response:
        body = await response.json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


async def test_the_alerts_fire_on_the_first_escalation_and_the_first_rejected_reload(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """A real Prometheus scrapes the controller every second and evaluates the shipped
    rules: the first escalation and the first rejected reload each fire their alert."""
    if prometheus.prometheus_binary() is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    folder = policies_folder(tmp_path, api=approval_policy())
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(1)) as runtime,
        serving(make_app(runtime.loop, clock, runtime.metrics), "127.0.0.1", 0) as server,
        anyio.create_task_group() as tg,
        aiohttp.ClientSession() as session,
    ):
        tg.start_soon(runtime.loop.run)
        with prometheus.prometheus(tmp_path, server.removeprefix("http://"), RULES) as url:
            with anyio.fail_after(WAIT):  # the controller as it starts, scraped twice
                while await scrapes(session, url) < 2:  # noqa: ASYNC110 (an external server: nothing to wait on but its answers)
                    await anyio.sleep(0.05)
            await clock.drive(START + timedelta(minutes=8), sleepers=1)  # the first breach
            assert value(exported(runtime), "remediator_escalations_total",
                         policy="api-cpu", reason="approval") == 1  # fmt: skip
            write(folder, "broken.yaml", {**BASE_POLICY, "interval": "soon"})
            assert await runtime.reload() is False
            wanted = {"RemediatorEscalation", "RemediatorPolicyReloadRejected"}
            deadline = time.monotonic() + WAIT
            while not wanted <= (seen := await firing(session, url)):
                assert time.monotonic() < deadline, f"firing: {seen or 'nothing'}"
                await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
