"""Scenario loading and validation, the settings writer, and the control API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from controller.emulator import (
    Emulator,
    ScenarioError,
    list_scenarios,
    load_scenario,
    write_settings,
)

from .support import API_APP, ManualClock, served

GOOD = """\
name: tiny
start: "2026-01-01T00:00:00Z"
duration: 10m
subscription: sub-1
resources:
  - type: containerApp
    resourceGroup: rg
    name: app
    location: eastus
    containers:
      - {name: c, image: i:1, cpu: 0.5, memory: 1Gi}
    workload: {cpuDemandCores: 0.2, baseMemoryMiB: 300}
timeline:
  - {at: 1h30m, resource: app, cpuDemandCores: 0.4}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_shipped_scenarios_load() -> None:
    assert {"cpu-spike", "flapping", "memory-leak", "steady", "cosmos-throttling"} <= set(
        list_scenarios()
    )
    spike = load_scenario("cpu-spike")
    assert spike.name == "cpu-spike" and spike.description
    assert spike.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert spike.duration == timedelta(minutes=25)
    assert spike.speed == 60.0 and spike.interval == timedelta(seconds=30)
    assert spike.subscription == "00000000-0000-0000-0000-000000000001"
    app = spike.resources[0]
    assert (app.resource_id, app.name, app.location) == (API_APP, "agentstudio-api", "eastus")
    policy = spike.policies[0]
    assert policy["target"]["resourceId"] == API_APP
    assert policy["objectives"][0]["signal"] == {
        "metric": "CpuPercentage",
        "aggregation": "Average",
        "grain": "1m",
    }
    assert type(policy) is dict and type(policy["target"]) is dict
    leak = load_scenario("memory-leak")
    assert leak.policies[0]["remediation"] == [
        {"restartRevision": {}},
        {"scaleUp": {"maxCpu": 2.0}},
    ]
    assert load_scenario("steady").faults == []


def test_defaults_and_load_by_path(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, GOOD))
    assert scenario.speed == 60.0 and scenario.interval == timedelta(seconds=30)
    assert scenario.timeline[0].at == timedelta(hours=1, minutes=30)
    assert scenario.resources[0].min_replicas == 1
    assert scenario.resources[0].revision == "app--r1"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("duration: 10m", "duration: 10 minutes", ":3: scenario.duration: bad duration"),
        ("duration: 10m", "duration: 10m\ncolour: red", ":4: scenario: unknown key(s) colour"),
        ("resource: app,", "resource: ghost,", ":14: timeline entry: unknown resource 'ghost'"),
        (
            "cpu: 0.5, memory: 1Gi",
            "cpu: 0.5, memory: 2Gi",
            ":11: resource app: container c: memory 2Gi",
        ),
        (
            "workload: {",
            "workload: {bogus: 1, ",
            ":12: resource app: workload: unknown key(s) bogus",
        ),
        (
            "timeline:",
            "faults:\n  - {at: 1m, kind: disk-full}\ntimeline:",
            ":14: fault: unknown kind",
        ),
        ("type: containerApp", "type: redis", ":6: resource app: type must be containerApp"),
        ("name: tiny\n", "", "missing key(s) name"),
        ("resources:", "resources: [\n", "invalid YAML"),
    ],
)
def test_validation_errors_name_file_and_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_unknown_scenario_name() -> None:
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("does-not-exist")


def test_policy_must_target_a_scenario_resource(tmp_path: Path) -> None:
    text = GOOD + "policies:\n  - {kind: Policy, target: {resourceId: /subscriptions/x/nope}}\n"
    with pytest.raises(ScenarioError, match="not a scenario resource"):
        load_scenario(_write(tmp_path, text))


def test_write_settings(tmp_path: Path) -> None:
    scenario = load_scenario("cpu-spike")
    out = write_settings(
        tmp_path / "run" / "demo.yaml",
        base_url="http://127.0.0.1:5555",
        scenario=scenario,
        clock_anchor_wall=1700000000.5,
        clock_anchor_scenario=scenario.start,
        speed=60,
        mode="enforce",
    )
    settings = yaml.safe_load(out.read_text())
    folder = tmp_path / "run" / "demo.policies"
    assert settings == {
        "mode": "enforce",
        "interval": "30s",
        "policies": str(folder.resolve()),
        "auditPath": str((tmp_path / "run" / "demo.audit.jsonl").resolve()),
        "credential": "emulator",
        "cloud": "custom",
        "armEndpoint": "http://127.0.0.1:5555",
        "metricsEndpoint": "http://127.0.0.1:5555",
        "logsEndpoint": "http://127.0.0.1:5555",
        "listen": "127.0.0.1:9464",
        "clock": {
            "anchorWall": 1700000000.5,
            "anchorScenario": "2026-01-01T00:00:00Z",
            "speed": 60.0,
        },
    }
    files = sorted(folder.glob("*.yaml"))
    assert len(files) == 1
    assert yaml.safe_load(files[0].read_text()) == scenario.policies[0]


def test_control_api(make_emulator: Callable[..., Emulator], clock: ManualClock) -> None:
    emu = make_emulator("memory-leak")
    clock.set(10.5)
    seen: dict[str, Any] = {}

    async def body() -> None:
        async with served(emu, auth=False) as s:
            async with s.get("/_emulator/state") as r:
                seen.update(await r.json())
            assert seen == emu.state()
            async with s.post("/_emulator/faults", json={"kind": "metrics-null", "for": "3m"}) as r:
                assert r.status == 200
                fault = await r.json()
            assert fault["end"] == "2026-01-01T00:13:30Z"
            async with s.post("/_emulator/faults", json={"kind": "disk-full"}) as r:
                assert r.status == 400
            async with s.post(
                "/_emulator/faults", json={"kind": "metrics-hang", "hang_seconds": 1}
            ) as r:
                assert r.status == 200
            assert [f["kind"] for f in emu.state()["faults"]] == ["metrics-null", "metrics-hang"]
            assert emu.state()["faults"][1]["params"] == {"hang_seconds": 1}
            async with s.delete("/_emulator/faults") as r:
                assert r.status == 200
            assert emu.state()["faults"] == []

    anyio.run(body)
    state = seen
    assert state["scenario"] == "memory-leak"
    assert state["now"] == "2026-01-01T00:10:30Z"
    assert state["writes"] == 0
    worker = next(iter(state["resources"].values()))
    assert worker["name"] == "agentstudio-worker" and worker["type"] == "containerApp"
    assert worker["replicas"] == 1 and worker["minReplicas"] == 1 and worker["maxReplicas"] == 10
    assert worker["containers"] == [
        {"name": "worker", "image": "agentstudio/worker:2.0.1", "cpu": 0.5, "memory": "1Gi"}
    ]
    assert worker["latestRevision"] == "agentstudio-worker--r1"
    assert worker["restarts"] == 0
    assert worker["cpuPercent"] == 30.0
    assert worker["memoryPercent"] == pytest.approx(
        round(580 / 1024 * 100, 2)
    )  # minute 9: 7 min of leak
