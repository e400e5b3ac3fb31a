"""Crash tests: the controller as a process, SIGKILLed at many points during actions.

After every kill the controller is restarted against the same emulator and audit log.
Whatever the moment of the kill: the audit verifies, no intent gets two results, and
Azure never sees more writes than the controller wrote intents — nothing is retried
blindly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.audit.log import check_file, read_records
from tests.e2e.test_emulator_and_run import cli, eventually, free_port, get_json

SCENARIO = """\
name: crash
description: a spike that lasts; every update takes two polls a second apart
start: "2026-01-01T00:00:00Z"
duration: 24h
speed: 600
interval: 30s
subscription: 00000000-0000-0000-0000-000000000001
resources:
  - type: containerApp
    resourceGroup: rg
    name: api
    location: eastus
    minReplicas: 1
    maxReplicas: 30
    revision: api--r1
    containers: [{name: api, image: x:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 9.0, baseMemoryMiB: 300}
policies:
  - apiVersion: remediator/v1
    kind: Policy
    metadata: {name: api-cpu}
    target:
      type: containerApp
      resourceId: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.App/containerApps/api
      region: eastus
    objectives:
      - {name: cpu, signal: {metric: CpuPercentage}, comparison: "<", threshold: 70, for: 2m}
    remediation:
      - scaleOut: {step: 1, maxReplicas: 25}
    guards:
      cooldown: 1m
      maxActionsPerHour: 60
      breaker: {failures: 20}
    verification: {settle: 1m}
"""


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    scenario = tmp_path / "crash.yaml"
    scenario.write_text(SCENARIO)
    config = tmp_path / "settings.yaml"
    port = free_port()
    proc = cli(
        "emulator",
        "--port",
        str(port),
        "--scenario",
        str(scenario),
        "--write-config",
        str(config),
        "--lro-polls",
        "2",
        "--lro-retry-after",
        "1",
    )
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        yield config, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def audit_of(config: Path) -> Path:
    return config.with_name(config.stem + ".audit.jsonl")


def intents(config: Path) -> int:
    path = audit_of(config)
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"kind": "intent"' in line)


def results(config: Path) -> int:
    path = audit_of(config)
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"kind": "result"' in line)


def patches(base: str) -> int:
    requests = get_json(f"{base}/_emulator/requests") or []
    return sum(1 for r in requests if r["method"] == "PATCH")


def kill_when(config: Path, base: str, ready: Callable[[], bool], delay: float) -> None:
    """Run the controller live until ``ready()``, wait ``delay`` seconds, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")},
            "REMEDIATOR_MODE": "live",
            "REMEDIATOR_LISTEN": "off",
        },
    )
    try:
        eventually(ready, timeout=60)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def test_sigkill_at_many_points_never_duplicates_an_action(emulator: tuple[Path, str]) -> None:
    """Nine kills — right after an intent, as its PATCH lands, and mid-operation — then a
    clean run: the chain verifies, every intent has at most one result, writes ≤ intents."""
    config, base = emulator
    points: list[tuple[str, Callable[[int, int], Callable[[], bool]], float]] = [
        ("after the intent", lambda i, p: lambda: intents(config) > i, 0.0),
        ("as the PATCH lands", lambda i, p: lambda: patches(base) > p, 0.0),
        ("mid-operation", lambda i, p: lambda: patches(base) > p, 1.2),
    ]
    for _round in range(3):
        for _name, ready, delay in points:
            kill_when(config, base, ready(intents(config), patches(base)), delay)
    # a final run settles the last interrupted intent, and acts once more to the end
    before = intents(config)
    kill_when(config, base, lambda: intents(config) > before and results(config) >= before + 1, 0.5)

    check = check_file(audit_of(config))
    assert check.ok, f"line {check.first_bad}: {check.problem}"
    records = list(read_records(audit_of(config)))
    intent_seqs = [r["seq"] for r in records if r["kind"] == "intent"]
    closed = [r["intent"] for r in records if r["kind"] == "result"]
    assert len(closed) == len(set(closed)), "an intent got two results"
    assert set(closed) <= set(intent_seqs)
    settled = [r for r in records if "settled after an interruption" in r["reason"]]
    assert len(settled) >= 9 - 1  # every kill left an intent to settle (one may have finished)
    writes = (get_json(f"{base}/_emulator/state") or {})["writes"]
    assert writes <= len(intent_seqs), "Azure saw a write no intent accounts for"
    print(
        json.dumps(
            {
                "kills": 9,
                "intents": len(intent_seqs),
                "writes": writes,
                "settled": len(settled),
                "lines": check.lines,
                "torn": bool(check.torn),
            }
        )
    )
