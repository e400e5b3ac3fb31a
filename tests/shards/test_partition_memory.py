"""Memory per partition: a replica SIGKILLed mid-action leaves its partitions' memory to
whoever takes them next.

One emulator serves ten apps under one selector policy (three of them spike), Azurite
holds the leases, and each partition's audit log lives in one shared directory. Replica
``a`` runs alone, live: app X's scale-outs fail three times (its breaker opens), app Y's
scale-out is sent while ARM holds its answer back, and ``a`` is SIGKILLed with Y's intent
on disk and no result. Its leases are then broken (standing in for their expiry, so the
test does not wait out 15 s) and replica ``b`` starts: it replays both partitions' logs
before running their targets, so it settles Y's intent by reading the app (not by
sending it again), never acts for X (the breaker ``a`` opened holds), and counts the
four actions ``a`` spent against the estate's hourly cap of five — one action more at
most, then the cap holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from azure.storage.blob import BlobLeaseClient, ContainerClient

from controller.audit.log import check_file
from tests.azurite import azurite, azurite_binary
from tests.e2e.test_emulator_and_run import cli, eventually, free_port
from tests.shards.test_replicas_split_the_fleet import SUBSCRIPTION, api_policy

pytestmark = pytest.mark.skipif(
    azurite_binary() is None and not os.environ.get("CI"),
    reason="azurite-blob is not installed (make tools)",
)
PARTITIONS = 2
CAP = 5  # the estate's actions an hour: a spends four of them


def scenario(path: Path) -> Path:
    app = {
        "type": "containerApp",
        "resourceGroup": "rg",
        "location": "eastus",
        "minReplicas": 1,
        "maxReplicas": 10,
        "containers": [{"name": "app", "image": "x:1", "cpu": 0.5, "memory": "1Gi"}],
        "workload": {"cpuDemandCores": 0.15, "baseMemoryMiB": 300},
        "tags": {"remediator/policy": "api"},
    }
    body = {
        "name": "partition-memory",
        "start": "2026-01-01T00:00:00Z",
        "duration": "4h",
        "speed": 120,
        "interval": "30s",
        "subscription": SUBSCRIPTION,
        "resources": [
            *({**app, "name": name} for name in ("app-x", "app-y", "app-z")),
            {**app, "count": 7, "name": "idle-{i}"},
        ],
        "timeline": [
            {"at": "30s", "resource": "app-x", "cpuDemandCores": 0.8},
            {"at": "15m", "resource": "app-y", "cpuDemandCores": 0.8},
            {"at": "18m", "resource": "app-z", "cpuDemandCores": 0.8},
        ],
        # X's first three scale-outs end Failed (one fault each): its breaker opens
        "faults": [{"at": "0s", "kind": "lro-fail"} for _ in range(3)],
        "policies": [
            api_policy(
                [{"scaleOut": {"step": 1, "maxReplicas": 6}}],
                {
                    "cooldown": "1m",
                    "maxActionsPerHour": 10,
                    "breaker": {"failures": 3, "openFor": "2h"},
                },
            )
        ],
    }
    path.write_text(yaml.safe_dump(body))
    return path


def lines(directory: Path) -> list[dict[str, Any]]:
    """Every line of every partition's log (a torn last line is skipped)."""
    found = []
    for path in sorted(directory.glob("partition-*.jsonl")):
        for text in path.read_text().splitlines():
            try:
                found.append(json.loads(text))
            except ValueError:
                continue
    return found


def of(records: list[dict[str, Any]], app: str, **match: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r.get("target", "").endswith(f"/{app}") and all(r.get(k) == v for k, v in match.items())
    ]


def replica(
    config: Path,
    tmp_path: Path,
    storage: str,
    name: str,
    cap: int = CAP,
    stderr: IO[str] | None = None,
) -> subprocess.Popen[str]:
    """``remediator run``, live, as shard replica ``name`` of ``PARTITIONS`` with an hourly
    cap of ``cap`` for the estate. ``stderr``: a file for its JSON log (else piped)."""
    shards = {
        "enabled": True,
        "connectionString": storage,
        "container": "shards",
        "partitions": PARTITIONS,
        "identity": name,
        "retryPeriod": "500ms",
        "auditDir": str(tmp_path / "partitions"),
    }
    env = {
        "REMEDIATOR_MODE": "live",
        "REMEDIATOR_LISTEN": "off",
        "REMEDIATOR_AUDIT_PATH": str(tmp_path / f"{name}.audit.jsonl"),
        "REMEDIATOR_SHARDS": json.dumps(shards),
        "REMEDIATOR_BUDGETS": json.dumps({"globalPerHour": cap}),
    }
    if stderr is None:
        return cli("run", "--config", str(config), env=env)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env={**inherited, **env, "REMEDIATOR_LOG_LEVEL": "info", "REMEDIATOR_LOG_FORMAT": "json"},
    )


def emulator_call(port: int, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.timeout(120)
def test_a_killed_replicas_spend_breaker_and_open_intent_bind_the_new_owner(
    tmp_path: Path,
) -> None:
    config = tmp_path / "settings.yaml"
    port = free_port()
    emulator = cli(
        "emulator",
        "--port",
        str(port),
        "--scenario",
        str(scenario(tmp_path / "scenario.yaml")),
        "--write-config",
        str(config),
    )
    partitions = tmp_path / "partitions"
    procs: list[subprocess.Popen[str]] = []
    try:
        with azurite(tmp_path / "azurite") as storage:
            eventually(lambda: config.exists() and "clock" in config.read_text())
            a = replica(config, tmp_path, storage, "a")
            procs.append(a)
            # X fails three times: its breaker opens
            eventually(lambda: len(of(lines(partitions), "app-x", outcome="failed")) >= 3, 40)
            # from now on ARM holds back its answer to a write (not to a read: the decision
            # stays fresh): Y's scale-out is sent, and a dies before hearing back
            emulator_call(
                port,
                "POST",
                "/_emulator/faults",
                {"kind": "arm-slow", "delay_seconds": 30, "writes_only": True},
            )
            eventually(lambda: of(lines(partitions), "app-y", kind="intent"), 40)
            time.sleep(0.5)  # the PATCH is on its way (its answer is 30 s off)
            a.send_signal(signal.SIGKILL)
            a.wait(timeout=10)
            sent = emulator_call(port, "GET", "/_emulator/requests")
            landed = any(
                r["method"] == "PATCH" and r["path"].lower().endswith("/app-y") for r in sent
            )
            left = lines(partitions)
            [open_intent] = of(left, "app-y", kind="intent")
            assert not of(left, "app-y", kind="result")  # a died before Y's answer came
            assert len([r for r in left if r.get("kind") == "intent"]) == CAP - 1
            emulator_call(port, "DELETE", "/_emulator/faults")
            # the leases expire on their own within 15 s; breaking them now saves the wait
            with ContainerClient.from_connection_string(storage, "shards") as container:
                for blob in (*(f"shards/{p:05d}" for p in range(PARTITIONS)), "shards/replicas/a"):
                    BlobLeaseClient(container.get_blob_client(blob)).break_lease(
                        lease_break_period=0
                    )

            b = replica(config, tmp_path, storage, "b")
            procs.append(b)

            def capped_or_over() -> bool:
                by_b = [r for r in lines(partitions) if r.get("replica") == "b"]
                capped = any(f"the cap is {CAP}" in str(r.get("reason")) for r in by_b)
                return capped or len([r for r in by_b if r.get("kind") == "intent"]) > 1

            eventually(capped_or_over, 40)
            settled = of(lines(partitions), "app-y", kind="result", intent=open_intent["seq"])
            b.send_signal(signal.SIGTERM)
            b.wait(timeout=15)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=15)

    records = lines(partitions)
    by_b = [r for r in records if r.get("replica") == "b"]
    # Y's intent: settled by b reading the app (it shows whether the PATCH landed)
    outcome = "succeeded" if landed else "failed"
    assert [(r["replica"], r["outcome"]) for r in settled] == [("b", outcome)]
    assert settled[0]["reason"].startswith("settled after an interruption")
    # X: the breaker a opened holds for b (every line b wrote of X's scale-out says so)
    x_lines = [r for r in of(by_b, "app-x") if r.get("action") == "scaleOut"]
    assert x_lines
    assert all((r.get("breaker") or {}).get("openedAt") for r in x_lines)
    assert not of(by_b, "app-x", kind="intent")
    # the estate's cap: a spent four, so b may spend one more at most
    assert len([r for r in by_b if r.get("kind") == "intent"]) <= CAP - (CAP - 1)
    # each partition's log verifies, with lines of both writers
    for path in sorted(partitions.glob("partition-*.jsonl")):
        assert check_file(path).ok, path
