"""Three `remediator run` processes split a fleet of 1,000 apps by partition, in real time.

One emulator process serves the estate (every app tagged for the selector policy, five
see a CPU spike), Azurite holds the partition leases, and three replicas run live with
shards on. They split the partitions; one is SIGKILLed and its partitions move to the
other two within the lease's duration plus one retry period. Across the whole run no
partition is owned by two replicas at once (as each replica's ``/readyz`` says, sampled
four times a second), every app's PATCHes are no more than the intents recorded for it,
and every intent was recorded by the replica that owned the app's partition then.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.shards import partition_of
from tests.azurite import azurite, azurite_binary
from tests.e2e.test_emulator_and_run import cli, eventually, free_port

pytestmark = pytest.mark.skipif(
    azurite_binary() is None and not os.environ.get("CI"),
    reason="azurite-blob is not installed (make tools)",
)
PARTITIONS = 12
LEASE, RETRY = 15.0, 1.0
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
SPIKES = [7, 242, 513, 768, 901]


def api_policy(ladder: list[dict[str, Any]], guards: dict[str, Any]) -> dict[str, Any]:
    """The estate's one policy: every app tagged ``remediator/policy: api``, CPU under 70 %."""
    return {
        "apiVersion": "remediator/v1",
        "kind": "Policy",
        "metadata": {"name": "api-cpu"},
        "target": {
            "type": "containerApp",
            "selector": {"subscriptions": [SUBSCRIPTION], "tags": {"remediator/policy": "api"}},
        },
        "objectives": [
            {
                "name": "cpu",
                "signal": {"metric": "CpuPercentage", "aggregation": "Average", "grain": "1m"},
                "comparison": "<",
                "threshold": 70,
                "clear": 60,
                "for": "2m",
            }
        ],
        "remediation": ladder,
        "guards": guards,
    }


def scenario(path: Path) -> Path:
    """1,000 apps under one tag selector; a few spike early, so actions are checkable."""
    body = {
        "name": "fleet-1000",
        "start": "2026-01-01T00:00:00Z",
        "duration": "2h",
        "speed": 30,
        "interval": "30s",
        "subscription": SUBSCRIPTION,
        "resources": [
            {
                "type": "containerApp",
                "count": 1000,
                "name": "app-{i:04d}",
                "resourceGroup": "rg-fleet",
                "location": "eastus",
                "minReplicas": 1,
                "maxReplicas": 10,
                "containers": [
                    {"name": "app", "image": "fleet/app:1", "cpu": 0.5, "memory": "1Gi"}
                ],
                "workload": {"cpuDemandCores": 0.15, "baseMemoryMiB": 300},
                "tags": {"remediator/policy": "api"},
            }
        ],
        "timeline": [
            {"at": f"{2 + n}m", "resource": f"app-{i:04d}", "cpuDemandCores": 0.8}
            for n, i in enumerate(SPIKES)
        ],
        "policies": [
            api_policy(
                [{"scaleOut": {"step": 1, "maxReplicas": 4}}],
                {"cooldown": "3m", "maxActionsPerHour": 4, "bounds": {"maxReplicas": 6}},
            )
        ],
    }
    path.write_text(yaml.safe_dump(body))
    return path


def readyz(port: int) -> dict[str, Any] | None:
    """/readyz's body, whatever its status (a replica owning nothing is not ready)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as refused:
        return json.loads(refused.read())  # type: ignore[no-any-return]
    except OSError:
        return None


class Sampler(threading.Thread):
    """Each replica's owned partitions, four times a second, on this machine's clock."""

    def __init__(self, ports: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.samples: list[tuple[float, str, frozenset[int]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, port in list(self.ports.items()):
                body = readyz(port)
                shards = (body or {}).get("checks", {}).get("shards")
                if shards is not None:
                    self.samples.append((time.time(), name, frozenset(shards["owned"])))
            time.sleep(0.25)

    def latest(self) -> dict[str, frozenset[int]]:
        seen: dict[str, frozenset[int]] = {}
        for _, name, owned in self.samples:
            seen[name] = owned
        return seen

    def owner_at(self, name: str, when: float) -> frozenset[int]:
        """What ``name`` owned at its last sample before ``when`` (empty if none)."""
        owned: frozenset[int] = frozenset()
        for t, who, parts in self.samples:
            if who == name and t <= when:
                owned = parts
        return owned


def intents(directory: Path) -> list[dict[str, Any]]:
    """Every intent of every partition's log, each naming the replica that wrote it."""
    lines = [
        json.loads(line)
        for path in sorted(directory.glob("partition-*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return [r for r in lines if r.get("kind") == "intent"]


@pytest.mark.timeout(240)
def test_three_replicas_split_a_1000_app_fleet_and_a_killed_ones_partitions_move(
    tmp_path: Path,
) -> None:
    config = tmp_path / "settings.yaml"
    emulator_port = free_port()
    emulator = cli(
        "emulator",
        "--port",
        str(emulator_port),
        "--scenario",
        str(scenario(tmp_path / "fleet-1000.yaml")),
        "--write-config",
        str(config),
    )
    replicas: dict[str, subprocess.Popen[str]] = {}
    sampler: Sampler | None = None
    try:
        with azurite(tmp_path / "azurite") as storage:
            eventually(lambda: config.exists() and "clock" in config.read_text())
            clock = yaml.safe_load(config.read_text())["clock"]
            ports = {name: free_port() for name in ("r1", "r2", "r3")}
            for name, port in ports.items():
                shards = {
                    "enabled": True,
                    "connectionString": storage,
                    "container": "shards",
                    "partitions": PARTITIONS,
                    "identity": name,
                    "retryPeriod": f"{RETRY}s",
                    "auditDir": str(tmp_path / "partitions"),
                }
                replicas[name] = cli(
                    "run",
                    "--config",
                    str(config),
                    env={
                        "REMEDIATOR_MODE": "live",
                        "REMEDIATOR_LISTEN": f"127.0.0.1:{port}",
                        "REMEDIATOR_AUDIT_PATH": str(tmp_path / f"{name}.audit.jsonl"),
                        "REMEDIATOR_INTERVAL": "2m",
                        "REMEDIATOR_SHARDS": json.dumps(shards),
                    },
                )
            sampler = Sampler(ports)
            sampler.start()

            def split() -> bool:
                latest = sampler.latest() if sampler else {}
                owned = [latest.get(n, frozenset()) for n in ports]
                return sum(map(len, owned)) == PARTITIONS and all(len(o) >= 3 for o in owned)

            eventually(split, timeout=40)
            time.sleep(8)  # some actions happen while three replicas share the estate
            victim = "r1"
            lost = sampler.latest()[victim]
            replicas[victim].send_signal(signal.SIGKILL)
            killed_at = time.time()
            replicas[victim].wait(timeout=10)
            del sampler.ports[victim]

            def moved() -> bool:
                latest = sampler.latest() if sampler else {}
                return set().union(*(latest.get(n, frozenset()) for n in ("r2", "r3"))) == set(
                    range(PARTITIONS)
                )

            eventually(moved, timeout=LEASE + 3 * RETRY + 10)
            took = time.time() - killed_at
            time.sleep(6)  # the survivors act for the partitions they took
            sampler.stop.set()
            sampler.join(timeout=5)
            requests = json.loads(
                urllib.request.urlopen(
                    f"http://127.0.0.1:{emulator_port}/_emulator/requests", timeout=30
                ).read()
            )
    finally:
        if sampler is not None:
            sampler.stop.set()
        for proc in replicas.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=15)

    print(f"partitions of the killed replica ({sorted(lost)}) moved in {took:.1f} s")
    assert took <= LEASE + RETRY + 2.0  # the lease, one retry period, sampling slack
    # no partition owned by two replicas at any sampled moment
    by_time: dict[str, list[tuple[float, frozenset[int]]]] = defaultdict(list)
    for t, name, owned in sampler.samples:
        by_time[name].append((t, owned))
    for t, name, owned in sampler.samples:
        for other in by_time:
            if other != name:
                theirs = sampler.owner_at(other, t)
                stale = other == victim and t > killed_at
                assert stale or not (owned & theirs), (
                    f"{name} and {other} both own {owned & theirs}"
                )
    # every intent by the replica that owned the app's partition when it was recorded
    anchor_wall = float(clock["anchorWall"])
    anchor = datetime.fromisoformat(clock["anchorScenario"].replace("Z", "+00:00"))
    speed = float(clock["speed"])
    per_app: dict[str, set[str]] = defaultdict(set)
    count: dict[str, int] = defaultdict(int)
    for record in intents(tmp_path / "partitions"):
        name = record["replica"]
        app = record["target"].lower()
        ts = datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
        wall = anchor_wall + (ts - anchor).total_seconds() / speed
        partition = partition_of(app, PARTITIONS)
        assert partition in sampler.owner_at(name, wall + 0.5) | sampler.owner_at(
            name, wall - 0.5
        ), f"{name} recorded an intent for {app} without owning partition {partition}"
        per_app[app].add(name)
        count[app] += 1
    assert count, "the spiking apps were scaled out"
    patches: dict[str, int] = defaultdict(int)
    for request in requests:
        if request["method"] == "PATCH":
            patches[request["path"].lower()] += 1
    assert patches
    print(f"intents {sum(count.values())}, PATCHes {sum(patches.values())}, apps {len(patches)}")
    for app, n in patches.items():
        assert n <= count.get(app, 0), f"{app}: {n} PATCHes, {count.get(app, 0)} intents"
    assert {app.rsplit("/", 1)[1] for app in patches} <= {f"app-{i:04d}" for i in SPIKES}
