"""An orderly stop hands the hour's budget over: a replica stopped with SIGTERM leaves a
``budget`` line in each partition it held before letting their leases go.

One emulator serves a dozen apps under one selector policy, Azurite holds the leases,
and the estate may take four actions an hour across two partitions. Replica ``a`` runs
alone and live: four apps of partition 0 spike, and it spends the estate's four on them.
Replicas ``b`` and ``c`` start (their fair share of two partitions among three is none
while ``a`` holds both), then ``a`` gets SIGTERM: its targets end, it writes into each
partition's log half of what it spent this hour and what each slice of the bucket lacks,
closes the logs, and only then releases the leases. ``b`` and ``c`` take one partition
each (a cap of 2 apiece). Partition 1's log holds none of ``a``'s actions, so its new
owner learns of them only from the line: when three of its apps spike, it holds at its
cap of 2 instead of spending it — the estate stays at four in the hour, not six.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from controller.audit.log import check_file, read_records
from controller.audit.partitions import partition_log
from controller.background import run_until_stopped
from controller.clock import VirtualClock
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from controller.shards import partition_of
from tests.azurite import azurite, azurite_binary
from tests.conftest import emulator_settings
from tests.e2e.test_emulator_and_run import cli, eventually, free_port
from tests.integration.test_shard_runtime import (  # noqa: F401 (fixtures)
    SELECTOR_POLICY,
    fleet,
    storage,
    wait_until,
)
from tests.shards.test_partition_memory import lines, of, replica
from tests.shards.test_replicas_split_the_fleet import SUBSCRIPTION, api_policy

pytestmark = pytest.mark.skipif(
    azurite_binary() is None and not os.environ.get("CI"),
    reason="azurite-blob is not installed (make tools)",
)
PARTITIONS = 2
CAP = 4  # the estate's actions an hour: a spends all four
RG = "rg"


def _app_id(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}"
        f"/providers/Microsoft.App/containerApps/{name}"
    )


def _names() -> tuple[list[str], list[str], list[str]]:
    """Four apps of partition 0 (they spike first), three of partition 1 (they spike once
    ``a`` has stopped), and idle ones."""
    by_partition: dict[int, list[str]] = {0: [], 1: []}
    n = 0
    while len(by_partition[0]) < 6 or len(by_partition[1]) < 5:
        name = f"app-{n:02d}"
        by_partition[partition_of(_app_id(name), PARTITIONS)].append(name)
        n += 1
    first, second = by_partition[0][:4], by_partition[1][:3]
    idle = by_partition[0][4:6] + by_partition[1][3:5]
    return first, second, idle


FIRST, SECOND, IDLE = _names()


def scenario(path: Path) -> Path:
    app = {
        "type": "containerApp",
        "resourceGroup": RG,
        "location": "eastus",
        "minReplicas": 1,
        "maxReplicas": 10,
        "containers": [{"name": "app", "image": "x:1", "cpu": 0.5, "memory": "1Gi"}],
        "workload": {"cpuDemandCores": 0.15, "baseMemoryMiB": 300},
        "tags": {"remediator/policy": "api"},
    }
    body = {
        "name": "orderly-stop",
        "start": "2026-01-01T00:00:00Z",
        "duration": "4h",
        "speed": 120,
        "interval": "30s",
        "subscription": SUBSCRIPTION,
        "resources": [{**app, "name": name} for name in FIRST + SECOND + IDLE],
        "timeline": [
            *({"at": "30s", "resource": name, "cpuDemandCores": 0.8} for name in FIRST),
            # 20 s of wall time in: a has long stopped, b and c own a partition each
            *({"at": "40m", "resource": name, "cpuDemandCores": 0.8} for name in SECOND),
        ],
        "policies": [
            api_policy(
                [{"scaleOut": {"step": 1, "maxReplicas": 6}}],
                {"cooldown": "1m", "maxActionsPerHour": 10},
            )
        ],
    }
    path.write_text(yaml.safe_dump(body))
    return path


def intents(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "intent"]


def held_at_cap(records: list[dict[str, Any]], replica: str, cap: int) -> bool:
    """``replica`` has written a decision held by the estate's hourly cap of ``cap``."""
    return any(
        r.get("replica") == replica and f"the cap is {cap}" in str(r.get("reason")) for r in records
    )


def present(connection: str) -> set[str]:
    """The replicas whose presence lease Azurite shows held (the fair share counts them)."""
    from azure.storage.blob import ContainerClient

    with ContainerClient.from_connection_string(connection, "shards") as container:
        return {
            str(blob.name).rsplit("/", 1)[1]
            for blob in container.list_blobs(name_starts_with="shards/replicas/")
            if str(blob.lease.state or "") == "leased"
        }


@pytest.mark.timeout(150)
def test_a_replica_stopped_in_order_hands_its_hours_spend_to_the_next_owners(
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
    a_log = tmp_path / "a.stderr.jsonl"
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        with azurite(tmp_path / "azurite") as connection, a_log.open("w") as a_err:
            eventually(lambda: config.exists() and "clock" in config.read_text())
            procs["a"] = replica(config, tmp_path, connection, "a", CAP, stderr=a_err)
            eventually(lambda: len(intents(lines(partitions))) >= CAP, 40)
            eventually(lambda: held_at_cap(lines(partitions), "a", CAP), 20)
            for name in ("b", "c"):
                procs[name] = replica(config, tmp_path, connection, name, CAP)
            # b and c hold their presence leases: the two of them share what a leaves
            eventually(lambda: {"b", "c"} <= present(connection), 20)
            assert all(p.poll() is None for p in procs.values())
            stopped_at = time.monotonic()
            procs["a"].send_signal(signal.SIGTERM)
            assert procs["a"].wait(timeout=30) == 0
            took = time.monotonic() - stopped_at
            left = lines(partitions)

            def decided_on_second() -> list[dict[str, Any]]:
                records = lines(partitions)
                return [
                    r
                    for name in SECOND
                    for r in of(records, name, action="scaleOut")
                    if r.get("replica") in ("b", "c")
                ]

            eventually(lambda: len(decided_on_second()) >= 3, 60)
            seen = len(decided_on_second())
            # a few passes more of each app: nothing changes its mind
            eventually(lambda: len(decided_on_second()) >= seen + 3 * len(SECOND), 30)
            for name in ("b", "c"):
                procs[name].send_signal(signal.SIGTERM)
                assert procs[name].wait(timeout=30) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=15)

    print(f"a stopped in {took:.1f} s")
    # a spent the estate's four, on partition 0's apps
    by_a = intents([r for r in left if r.get("replica") == "a"])
    assert len(by_a) == CAP
    assert {r["target"].rsplit("/", 1)[1] for r in by_a} <= set(FIRST)
    spent_by_a = {(datetime.fromisoformat(r["ts"]), r["target"].lower()) for r in by_a}
    # as it stopped, a wrote one budget line into each partition: the four once, two each
    budget = [r for r in left if r.get("kind") == "budget" and r.get("replica") == "a"]
    assert len(budget) == PARTITIONS
    carried = [
        (datetime.fromisoformat(ts), key.split("|", 1)[1])
        for line in budget
        for ts, _sub, key in line["params"]["spent"]
    ]
    assert sorted(carried) == sorted(spent_by_a)
    assert [len(line["params"]["spent"]) for line in budget] == [2, 2]
    # its bucket (burst 10) held 6 and some refill: none kept, the rest split evenly
    owed = [line["params"]["owed"] for line in budget]
    assert owed[0] == owed[1] and 0 < owed[0][SUBSCRIPTION] <= 2.0
    stop = [
        json.loads(text) for text in a_log.read_text().splitlines() if '"partitions left"' in text
    ]
    assert [(s["partitions"], s["actions_handed"]) for s in stop] == [([0, 1], CAP)]

    records = lines(partitions)
    # the owner of partition 1 learnt of a's spend from the line alone: held at its cap
    second = [r for name in SECOND for r in of(records, name, action="scaleOut")]
    owner = {r["replica"] for r in second}
    assert len(owner) == 1 and owner <= {"b", "c"}
    assert not intents(second)
    assert any("the cap is 2" in str(r.get("reason")) for r in second)
    # the estate: four actions in the hour, all a's
    assert len(intents(records)) == CAP
    for path in sorted(partitions.glob("partition-*.jsonl")):
        assert check_file(path).ok, path


@pytest.mark.anyio
async def test_a_run_cancelled_from_outside_hands_over_before_its_leases_go(
    storage: str,  # noqa: F811
    tmp_path: Path,
    clock: VirtualClock,
    fleet: str,  # noqa: F811
) -> None:
    """In one process, on the `fleet` estate: a runtime owning both partitions, having
    spent 3 this hour, is cancelled from outside (as a task group around it would be).
    Its logs get a budget line each — the 3 dealt out 2 and 1, each slice of the bucket
    (10 − 3 = 7, none kept) 1.5 short — and are closed before any lease is released."""
    directory = tmp_path / "partitions"
    shards = {
        "enabled": True,
        "connectionString": storage,
        "container": f"stop{os.getpid()}{random.randrange(10**6)}",
        "partitions": PARTITIONS,
        "retryPeriod": "200ms",
        "auditDir": str(directory),
        "identity": "leaving",
    }
    settings = emulator_settings(fleet, tmp_path, mode="dry-run", shards=shards)
    loaded = [LoadedPolicy(SELECTOR_POLICY, "fleet.yaml", 1)]
    async with open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(1)) as rt:
        owner, logs, fleet_budget = rt.owner, rt.partition_logs, rt.fleet
        assert owner is not None and logs is not None and fleet_budget is not None
        open_at_release: list[set[int]] = []
        release_all = owner.release_all

        async def released() -> None:
            open_at_release.append(logs.opened())
            await release_all()

        owner.release_all = released  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_until_stopped, rt, anyio.sleep_forever)
            await wait_until(lambda: logs.opened() == {0, 1})
            for n in range(3):
                fleet_budget.spend("sub", clock.now(), f"api-cpu|app-{n}")
            tg.cancel_scope.cancel()
        assert open_at_release == [set()]  # every log closed before a lease was let go
        assert {c.partition: c.state for c in await owner.listing()} == {
            0: "available",
            1: "available",
        }
    lines = [
        r["params"]
        for p in range(PARTITIONS)
        for r in read_records(partition_log(directory, p))
        if r["kind"] == "budget"
    ]
    assert [len(line["spent"]) for line in lines] == [2, 1]
    assert [line["owed"] for line in lines] == [{"sub": pytest.approx(1.5)}] * 2
