"""A partition's audit log has one writer: the lease says who, the log's lock is a second
fence. On Azurite, with the `fleet` estate, in one process.

A replica that owns a partition whose log another writer still holds (an old owner,
paused or finishing an action) runs none of that partition's targets and says so
(``remediator_partitions_waiting``); it opens and replays the log the round after the
lock is let go. A partition lost is closed: its lock is free for the next owner, and what
the replica spent beyond its new share this hour is written into it first.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import anyio
import pytest

from controller.audit.lock import WriterLock
from controller.audit.log import read_records
from controller.audit.partitions import partition_log
from controller.background import follow_partitions
from controller.clock import VirtualClock
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from controller.shards import partition_of
from tests.conftest import emulator_settings
from tests.integration.test_shard_runtime import (  # noqa: F401 (fixtures)
    SELECTOR_POLICY,
    fleet,
    pytestmark,
    storage,
    targets,
    wait_until,
)

PARTITIONS = 2


async def test_a_partition_whose_log_is_held_waits_and_a_lost_one_lets_go(
    storage: str,  # noqa: F811
    tmp_path: Path,
    clock: VirtualClock,
    fleet: str,  # noqa: F811
) -> None:
    directory = tmp_path / "partitions"
    directory.mkdir()
    held = WriterLock(partition_log(directory, 0))  # an old owner, still holding the file
    held.acquire()
    shards = {
        "enabled": True,
        "connectionString": storage,
        "container": f"shards{uuid.uuid4().hex[:10]}",
        "partitions": PARTITIONS,
        "retryPeriod": "200ms",
        "auditDir": str(directory),
        "identity": "new-owner",
    }
    settings = emulator_settings(fleet, tmp_path, mode="dry-run", shards=shards)
    loaded = [LoadedPolicy(SELECTOR_POLICY, "fleet.yaml", 1)]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(1)) as runtime,
        anyio.create_task_group() as tg,
    ):
        owner = runtime.owner
        assert owner is not None
        leases = anyio.CancelScope()

        async def hold_leases() -> None:
            with leases:
                await owner.run()  # a cancel releases every lease (a clean stop)

        tg.start_soon(hold_leases)
        tg.start_soon(follow_partitions, runtime)
        await wait_until(lambda: owner.owned() == [0, 1])
        await anyio.sleep(0.5)  # two more retry periods
        assert runtime.expanded is not None
        estate = {i.policy.target.resource_id.lower() for i in runtime.expanded.targets}
        of = {p: {a for a in estate if partition_of(a, PARTITIONS) == p} for p in (0, 1)}
        # partition 0's log is held: its targets wait; partition 1's run
        assert targets(runtime) == of[1]
        assert runtime.metrics.partitions_waiting._value.get() == 1
        assert runtime.metrics.partitions_refused._value.get() == 0  # waiting, not refused
        # waiting for the old owner to let go is not unreadiness: it lets go by itself
        ready, body = await runtime.readiness.check()
        assert ready, body
        assert list(body["checks"]["shards"]["waiting"]) == ["0"]
        assert body["checks"]["shards"]["refused"] == {}
        assert not partition_log(directory, 0).with_suffix(".jsonl.head").exists()

        held.release()  # the old owner let go: the next round opens and runs it
        await wait_until(lambda: targets(runtime) == of[0] | of[1], 5)
        assert runtime.metrics.partitions_waiting._value.get() == 0

        assert runtime.fleet is not None
        for n in range(3):  # spent this hour: with no partition left, all beyond its share
            runtime.fleet.spend("sub", clock.now(), f"api-cpu|app-{n}")
        # … and of the bucket's 10 (the default burst), 7 left: 3.5 for each slice of 5
        leases.cancel()  # both lost: each log is closed, its lock let go
        await wait_until(lambda: not targets(runtime), 5)
        assert runtime.partition_logs is not None
        await wait_until(lambda: not runtime.partition_logs.opened(), 5)  # type: ignore[union-attr]
        for partition in (0, 1):
            again = WriterLock(partition_log(directory, partition))
            again.acquire()  # free: the next owner takes it
            again.release()
        # what it had spent went with them, once, for the next owner to count; each slice
        # of the bucket went short by what was spent from it
        lines = [
            r["params"]
            for p in (0, 1)
            for r in read_records(partition_log(directory, p))
            if r["kind"] == "budget"
        ]
        assert sorted(len(line["spent"]) for line in lines) == [0, 3]
        assert [line["owed"] for line in lines] == [{"sub": pytest.approx(1.5, abs=0.01)}] * 2
        tg.cancel_scope.cancel()
