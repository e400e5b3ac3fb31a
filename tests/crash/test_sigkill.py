"""Crash tests: the controller as a process, SIGKILLed at many points during actions.

After every kill the controller is restarted against the same emulator and audit log.
ARM's answers are held back a little (the emulator's ``arm-slow`` fault), so the kills
fall between the intent and the PATCH, between the PATCH and its result, and after it;
the emulator, like Azure, applies an accepted change whether or not anyone polls. Then:
the audit verifies, every intent has exactly one result, every settled result says what
the resource shows (succeeded exactly when its PATCH was sent and landed), and Azure
never sees the same change twice.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.audit.log import check_file, read_records
from tests.e2e.test_emulator_and_run import cli, eventually, free_port, get_json

START_REPLICAS = 100


SCENARIO = f"""\
name: crash
description: a spike that lasts and yields a little to every replica added
start: "2026-01-01T00:00:00Z"
duration: 720h
speed: 120
interval: 60s
subscription: 00000000-0000-0000-0000-000000000001
resources:
  - type: containerApp
    resourceGroup: rg
    name: api
    location: eastus
    minReplicas: {START_REPLICAS}
    maxReplicas: 1000
    revision: api--r1
    containers: [{{name: api, image: x:1, cpu: 0.5, memory: 1Gi}}]
    workload: {{cpuDemandCores: 47.5, baseMemoryMiB: 300}}
faults:
  - {{at: 0s, kind: arm-slow, delay_seconds: 0.15}}
policies:
  - apiVersion: remediator/v1
    kind: Policy
    metadata: {{name: api-cpu}}
    target:
      type: containerApp
      resourceId: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.App/containerApps/api
      region: eastus
    objectives:
      - {{name: cpu, signal: {{metric: CpuPercentage}}, comparison: "<", threshold: 70, for: 2m}}
    remediation:
      - scaleOut: {{step: 1, maxReplicas: 1000}}
    guards:
      cooldown: 1m
      maxActionsPerHour: 60
      breaker: {{failures: 20}}
    verification: {{settle: 2m, margin: 0.01}}
"""

# seconds between seeing a new intent on disk and the SIGKILL: 0 falls before the PATCH
# (the action's own read of the app is answered 0.15 s late), 0.2–0.65 between the PATCH
# and its result (the operation is polled ~0.8 s after the intent), 1.5 after the result
DELAYS = [0.0, 0.2, 0.35, 0.5, 0.65, 1.5] * 5 + [0.0, 0.35, 1.5]


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
        "1",
        "--lro-retry-after",
        "1",
        "--wobble",
        "0",
    )
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        yield config, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def audit_of(config: Path) -> Path:
    return config.with_name(config.stem + ".audit.jsonl")


def records_of(config: Path) -> list[dict[str, Any]]:
    path = audit_of(config)
    return list(read_records(path)) if path.exists() else []


def intents(config: Path) -> int:
    return sum(1 for r in records_of(config) if r["kind"] == "intent")


def patches(base: str) -> list[int]:
    """The minReplicas each PATCH Azure received asked for, in order."""
    requests = get_json(f"{base}/_emulator/requests") or []
    return [
        int(r["body"]["properties"]["template"]["scale"]["minReplicas"])
        for r in requests
        if r["method"] == "PATCH"
    ]


def _die_with_the_test() -> None:
    """In the child: SIGKILL it should the test process itself be killed (a timeout)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_until(config: Path, ready: Any, delay: float) -> None:
    """Run the controller live until ``ready()``, wait ``delay`` seconds, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_the_test,
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


def where(records: list[dict[str, Any]], seen: int, sent_before: int, sent: int) -> str:
    """Where the kill fell, for the newest intent this run wrote."""
    new = [r for r in records if r["kind"] == "intent"][seen:]
    if not new:
        return "before any intent"
    closed = {r["intent"] for r in records if r["kind"] == "result"}
    if new[-1]["seq"] in closed:
        return "after the result"
    return "after the PATCH, before the result" if sent > sent_before else "before the PATCH"


@pytest.mark.timeout(480)  # 34 controller processes, one after another
def test_sigkill_at_many_points_never_gives_a_false_result(emulator: tuple[Path, str]) -> None:
    """33 kills at points spread over the action, then a clean run: the chain verifies;
    no intent is left open or closed twice; each settled result matches what Azure got;
    no change is sent twice; the app holds exactly the changes that were sent."""
    config, base = emulator
    phases: Counter[str] = Counter()
    for delay in DELAYS:
        seen, sent_before = intents(config), len(patches(base))
        run_until(config, lambda seen=seen: intents(config) > seen, delay)
        time.sleep(0.2)  # a PATCH already on the wire reaches the emulator
        phases[where(records_of(config), seen, sent_before, len(patches(base)))] += 1
    # a last run settles the last interrupted intent and acts once more, to its result
    seen = intents(config)

    def settled_and_acted() -> bool:
        records = records_of(config)
        closed = {r["intent"] for r in records if r["kind"] == "result"}
        opened = [r["seq"] for r in records if r["kind"] == "intent"]
        return len(opened) > seen and set(opened) <= closed

    run_until(config, settled_and_acted, 0.0)

    check = check_file(audit_of(config))
    assert check.ok, f"line {check.first_bad}: {check.problem}"
    records = records_of(config)
    intent_lines = [r for r in records if r["kind"] == "intent"]
    results = [r for r in records if r["kind"] == "result"]
    closed = Counter(r["intent"] for r in results)
    assert set(closed) == {r["seq"] for r in intent_lines}, "an intent was left open"
    assert max(closed.values()) == 1, "an intent got two results"

    sent = patches(base)
    assert len(sent) == len(set(sent)), f"a change was sent twice: {sent}"
    state = (get_json(f"{base}/_emulator/state") or {})["resources"]
    [app] = state.values()
    assert app["minReplicas"] == START_REPLICAS + len(sent)  # each change landed, once

    # The truth of every result: an intent's change landed exactly when Azure got its
    # PATCH, and only the last intent aiming at a value can have sent it (once it
    # landed, the next plan aims one higher).
    by_intent = {r["intent"]: r for r in results}
    aiming: dict[int, list[dict[str, Any]]] = {}
    for intent in intent_lines:
        aiming.setdefault(int(intent["after"]["minReplicas"]), []).append(intent)
    false_results = []
    for value, group in aiming.items():
        for intent in group:
            landed = value in sent and intent is group[-1]
            outcome = by_intent[intent["seq"]]["outcome"]
            if outcome != ("succeeded" if landed else "failed"):
                false_results.append((intent["seq"], value, outcome))
    assert false_results == []
    settled = [r for r in results if "settled after an interruption" in r["reason"]]
    assert phases["before the PATCH"] >= 3, phases
    assert phases["after the PATCH, before the result"] >= 3, phases
    assert len(settled) >= phases["before the PATCH"] + phases["after the PATCH, before the result"]
    print(
        json.dumps(
            {
                "kills": len(DELAYS),
                "where": dict(phases),
                "intents": len(intent_lines),
                "patches": len(sent),
                "settled": Counter(r["outcome"] for r in settled),
                "false results": len(false_results),
                "lines": check.lines,
            }
        )
    )
