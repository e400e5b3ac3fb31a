"""Turning shards on for an estate that ran as one process: no memory is lost.

The single process's log (``single_log.py``) holds an intent sent just before it stopped
(app-007, partition 1), a breaker its three failures opened (app-042, partition 0) and
actions of the hour in both partitions. Two replicas start with shards on (Azurite holds
the leases, the `fleet` estate on the emulator, live, on a virtual clock) and
``importFrom`` naming that log. Each partition's new owner settles the intent by reading
the app (it is not sent again), keeps the breaker, and counts the partition's actions
against its share of the hourly cap. A source whose chain is broken is refused: nothing
runs on an empty memory, and the replicas are not ready (an operator must act), `/readyz`
saying why; a source its writer still holds keeps them waiting, and ready.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from controller.audit.log import AuditLog, check_file, read_records
from controller.audit.migrate import IMPORTED_FROM, MARKER
from controller.audit.partitions import partition_log
from controller.background import follow_partitions
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import Runtime, open_runtime
from tests.conftest import START, emulator_settings
from tests.integration.helpers import raw_patch
from tests.integration.test_shard_runtime import (  # noqa: F401 (fixtures)
    SCENARIO,
    SELECTOR_POLICY,
    pytestmark,
    storage,
    targets,
    wait_until,
)
from tests.shards.single_log import BREAKER_APP, INTENT_APP, SUB, write_single_log

PARTITIONS = 2
CAP = 20  # the estate's actions an hour: each replica's share, one partition, is 10
COUNTED = {0: 5, 1: 2}  # partition 0: 3 failures + 2 actions; 1: 1 action + the open intent


@pytest.fixture
async def fleet_emulator(clock: VirtualClock) -> AsyncIterator[tuple[Emulator, str]]:
    emu = Emulator(SCENARIO, now=clock.now)
    emu.clear_faults()
    async with emu.serve() as base_url:
        yield emu, base_url


def shard_settings(connection: str, tmp_path: Path, base_url: str, name: str, source: Path) -> Any:
    shards = {
        "enabled": True,
        "connectionString": connection,
        "container": f"shards{tmp_path.name}",
        "partitions": PARTITIONS,
        "retryPeriod": "200ms",
        "auditDir": str(tmp_path / "partitions"),
        "identity": name,
        "importFrom": str(source),
    }
    return emulator_settings(
        base_url,
        tmp_path / name,
        mode="live",
        shards=shards,
        # the subscription's bucket out of the way: the estate's cap is what counts here
        budgets={"globalPerHour": CAP, "subscriptionBurst": 100, "subscriptionPerHour": 200},
    )


async def replicas(
    stack: AsyncExitStack, connection: str, tmp_path: Path, base_url: str, clock: VirtualClock
) -> list[Runtime]:
    """Two replicas, each holding one of the two partitions once they have split them."""
    source = tmp_path / "single" / "audit.jsonl"
    loaded = [LoadedPolicy(SELECTOR_POLICY, "fleet.yaml", 1)]
    runtimes = []
    for name in ("a", "b"):
        settings = shard_settings(connection, tmp_path, base_url, name, source)
        runtimes.append(
            await stack.enter_async_context(
                open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(1))
            )
        )
    tg = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(tg.cancel_scope.cancel)
    for runtime in runtimes:
        assert runtime.owner is not None
        tg.start_soon(runtime.owner.run)
        tg.start_soon(follow_partitions, runtime)

    def split() -> bool:
        return all(r.owner is not None and len(r.owner.owned()) == 1 for r in runtimes)

    await wait_until(split)
    await anyio.sleep(0.5)  # two more retry periods: each applied its partition
    return runtimes


def partition_of_replica(runtime: Runtime) -> int:
    assert runtime.owner is not None
    [partition] = runtime.owner.owned()
    return partition


def patches_to(emu: Emulator, resource_id: str) -> int:
    return sum(
        1
        for r in emu.requests
        if r["method"] == "PATCH" and r["path"].lower().startswith(resource_id.lower())
    )


async def test_each_new_owner_settles_the_intent_keeps_the_breaker_and_counts_the_hour(
    storage: str,  # noqa: F811
    tmp_path: Path,
    clock: VirtualClock,
    fleet_emulator: tuple[Emulator, str],
) -> None:
    emu, base_url = fleet_emulator
    tmp_path = tmp_path / uuid.uuid4().hex[:8]
    single = write_single_log(tmp_path / "single" / "audit.jsonl", START)
    source_head = check_file(single.path)
    # the scale-out the single process sent before it stopped landed: the app shows it
    await raw_patch(
        base_url, INTENT_APP, {"properties": {"template": {"scale": {"minReplicas": 2}}}}
    )
    sent_before = patches_to(emu, INTENT_APP)
    await clock.advance(14 * 60)  # app-042 in breach since 10 minutes in
    async with AsyncExitStack() as stack:
        runtimes = await replicas(stack, storage, tmp_path, base_url, clock)
        by_partition = {partition_of_replica(r): r for r in runtimes}
        # budgets: each owner counts its partition's actions of the hour against its share
        for partition, runtime in by_partition.items():
            assert runtime.fleet is not None
            _tokens, left = runtime.fleet.remaining(SUB, clock.now())
            assert left == CAP // PARTITIONS - COUNTED[partition], partition
            _ready, body = await runtime.readiness.check()
            assert body["checks"]["shards"]["waiting"] == {}
        # the breaker the single process opened holds for partition 0's owner
        [breaker_target] = [
            r for r in by_partition[0].loop.reconcilers if r.target.lower() == BREAKER_APP.lower()
        ]
        assert breaker_target.memory.breakers["scaleOut"].opened_at == single.opened_at
        # a pass each: partition 1's owner settles the intent by reading the app
        for runtime in runtimes:
            await runtime.loop.run_once()
        assert patches_to(emu, INTENT_APP) == sent_before  # settled, never sent again
        # a second once every target has reported since app-042's breach began, and the
        # subscription's bucket has a token again: the breaker is what holds app-042
        await clock.advance(7 * 60)
        await by_partition[0].loop.run_once()
        for runtime in runtimes:
            assert runtime.partition_logs is not None
            runtime.partition_logs.close_all()

    one = list(read_records(partition_log(tmp_path / "partitions", 1)))
    [settled] = [r for r in one if r["kind"] == "result" and r.get("intent") == single.intent_seq]
    assert settled["reason"].startswith("settled after an interruption")
    assert settled["outcome"] == "succeeded"
    assert settled["replica"] == by_partition[1].settings.shards.identity
    zero = list(read_records(partition_log(tmp_path / "partitions", 0)))
    breaker_lines = [r for r in zero if (r.get("target") or "").lower() == BREAKER_APP.lower()]
    assert not [r for r in breaker_lines if r["kind"] == "intent"]
    assert breaker_lines[-1]["guard"] == "breaker", breaker_lines[-1]["reason"]
    for records in (zero, one):  # each log starts with its import, once
        seeds = [r for r in records if IMPORTED_FROM in r]
        assert [r["seq"] for r in seeds] == [1]
        assert seeds[0][IMPORTED_FROM]["hash"] == source_head.last_hash
    assert check_file(single.path).last_hash == source_head.last_hash  # only read


async def test_a_broken_source_refuses_the_partitions_and_the_replicas_are_not_ready(
    storage: str,  # noqa: F811
    tmp_path: Path,
    clock: VirtualClock,
    fleet_emulator: tuple[Emulator, str],
) -> None:
    _emu, base_url = fleet_emulator
    tmp_path = tmp_path / uuid.uuid4().hex[:8]
    single = write_single_log(tmp_path / "single" / "audit.jsonl", START)
    text = single.path.read_text().splitlines(keepends=True)
    del text[4]  # a line taken out of the middle
    single.path.write_text("".join(text))
    await clock.advance(8 * 60)
    async with AsyncExitStack() as stack:
        with capture_logs() as said:
            runtimes = await replicas(stack, storage, tmp_path, base_url, clock)
            await anyio.sleep(0.5)  # more retry periods: tried again, not said again
        for runtime in runtimes:
            assert targets(runtime) == set()  # no target runs on an empty memory
            assert runtime.metrics.partitions_waiting._value.get() == 1
            assert runtime.metrics.partitions_refused._value.get() == 1  # for the alert
            # not ready: the partition's targets go unmanaged until an operator acts, and a
            # rollout must not go on over it (the old revision keeps running)
            ready, body = await runtime.readiness.check()
            assert not ready, body
            shards = body["checks"]["shards"]
            assert shards["waiting"] == {} and not shards["ok"]
            [(partition, why)] = shards["refused"].items()
            assert f"importFrom {single.path}:5: audit chain broken" in why, why
            assert shards["problem"].startswith(f"partition(s) {partition} refused")
            assert runtime.partition_logs is not None
            runtime.partition_logs.close_all()
    refusals = [e["partition"] for e in said if e["event"] == "partition audit log refused"]
    assert sorted(refusals) == [0, 1]  # once each, not every retry period
    for partition in range(PARTITIONS):
        assert list(read_records(partition_log(tmp_path / "partitions", partition))) == []


async def test_a_source_its_writer_still_holds_keeps_the_partitions_waiting_and_ready(
    storage: str,  # noqa: F811
    tmp_path: Path,
    clock: VirtualClock,
    fleet_emulator: tuple[Emulator, str],
) -> None:
    """The old revision still runs: the new one waits for it, ready, so it can be stopped."""
    _emu, base_url = fleet_emulator
    tmp_path = tmp_path / uuid.uuid4().hex[:8]
    single = write_single_log(tmp_path / "single" / "audit.jsonl", START)
    writer = AuditLog(single.path)
    writer.open()  # the single process, still running
    await clock.advance(8 * 60)
    async with AsyncExitStack() as stack:
        runtimes = await replicas(stack, storage, tmp_path, base_url, clock)
        for runtime in runtimes:
            assert targets(runtime) == set()
            ready, body = await runtime.readiness.check()
            assert ready, body
            shards = body["checks"]["shards"]
            assert shards["refused"] == {}
            [(_partition, why)] = shards["waiting"].items()
            assert "still runs" in why and str(single.path) in why, why
        writer.close()  # stopped: each partition imports at its next retry period
        await wait_until(lambda: all(targets(r) for r in runtimes), 5)
        for runtime in runtimes:
            _ready, body = await runtime.readiness.check()
            assert body["checks"]["shards"]["waiting"] == {}
            assert runtime.partition_logs is not None
            runtime.partition_logs.close_all()
    marker = json.loads((tmp_path / "partitions" / MARKER).read_text())
    assert marker["hash"] == check_file(single.path).last_hash
    assert marker["partitions"] == PARTITIONS


async def test_a_replica_whose_own_log_holds_the_estates_memory_says_it_is_not_imported(
    storage: str,  # noqa: F811
    tmp_path: Path,
    clock: VirtualClock,
    fleet_emulator: tuple[Emulator, str],
) -> None:
    """Shards turned on with the single process's log still the replica's auditPath and
    no importFrom: that memory is not read with shards, and the start says so."""
    _emu, base_url = fleet_emulator
    write_single_log(tmp_path / "a" / "audit.jsonl", START)
    settings = shard_settings(storage, tmp_path, base_url, "a", tmp_path / "x.jsonl")
    settings = settings.model_copy(
        update={"shards": settings.shards.model_copy(update={"import_from": None})}
    )
    loaded = [LoadedPolicy(SELECTOR_POLICY, "fleet.yaml", 1)]
    with capture_logs() as logs:
        async with open_runtime(settings, clock=clock, policies=loaded):
            pass
    [warning] = [e for e in logs if "holds target memory from before shards" in e["event"]]
    assert warning["targets"] == 5 and warning["path"] == str(settings.audit_path)
    assert "shards.importFrom" in warning["hint"]
