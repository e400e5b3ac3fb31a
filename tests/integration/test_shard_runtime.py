"""Shards in the controller: replicas split the selector's targets by partition, against
Azurite and the `fleet` estate.

Three runtimes on one emulator, each with a partition owner on one container: once the
partitions are split, each runs only the targets of the partitions it owns — together
every target once, no target twice; a replica that owns nothing runs nothing and may not
write for any app; a lost partition stops its targets' writes before another can take it.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from controller.audit.log import MemoryAudit
from controller.background import follow_partitions
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.policy.loader import LoadedPolicy
from controller.policy.schema import Policy
from controller.runtime import Runtime, open_runtime
from controller.shards import partition_of
from tests.azurite import azurite, azurite_binary
from tests.conftest import emulator_settings

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        azurite_binary() is None and not os.environ.get("CI"),
        reason="azurite-blob is not installed (make tools)",
    ),
]
SCENARIO = load_scenario("fleet")
[SELECTOR_POLICY] = [Policy.model_validate(p) for p in SCENARIO.policies]
API = {
    r.resource_id.lower() for r in SCENARIO.resources if r.tags.get("remediator/policy") == "api"
}
PARTITIONS = 8


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with azurite(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


@pytest.fixture
async def fleet(clock: VirtualClock) -> AsyncIterator[str]:
    emu = Emulator(SCENARIO, now=clock.now)
    emu.clear_faults()
    async with emu.serve() as base_url:
        yield base_url


def targets(runtime: Runtime) -> set[str]:
    return {r.target.lower() for r in runtime.loop.reconcilers}


async def wait_until(condition: object, seconds: float = 20.0) -> None:
    """Poll lease state that lives in Azurite (no event to wait on)."""
    assert callable(condition)
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def test_three_replicas_split_the_targets_each_exactly_once(
    storage: str, tmp_path: Path, clock: VirtualClock, fleet: str
) -> None:
    container = f"shards{uuid.uuid4().hex[:10]}"
    shards = {
        "enabled": True,
        "connectionString": storage,
        "container": container,
        "partitions": PARTITIONS,
        "retryPeriod": "200ms",
        "auditDir": str(tmp_path / "partitions"),
    }
    loaded = [LoadedPolicy(SELECTOR_POLICY, "fleet.yaml", 1)]
    async with AsyncExitStack() as stack:
        runtimes = []
        for name in ("a", "b", "c"):
            settings = emulator_settings(
                fleet,
                tmp_path / name,
                mode="dry-run",
                shards={**shards, "identity": name},
                # 3 tokens over 8 partitions: a share of 2 is a bucket of 0.75, never one
                budgets={"subscriptionBurst": 3},
            )
            runtimes.append(
                await stack.enter_async_context(
                    open_runtime(
                        settings,
                        clock=clock,
                        policies=loaded,
                        audit=MemoryAudit(),
                        rng=random.Random(1),
                    )
                )
            )
        # nothing owned yet: no replica runs a target, and none may write for any app
        for runtime in runtimes:
            assert runtime.owner is not None
            assert targets(runtime) == set()
            assert all(runtime.owner.may_act(app) is not None for app in API)
        tg = await stack.enter_async_context(anyio.create_task_group())
        for runtime in runtimes:
            assert runtime.owner is not None
            tg.start_soon(runtime.owner.run)
            tg.start_soon(follow_partitions, runtime)

        def split() -> bool:
            owned = [set(r.owner.owned()) for r in runtimes if r.owner is not None]
            return sum(map(len, owned)) == PARTITIONS and all(len(o) >= 2 for o in owned)

        await wait_until(split)
        await anyio.sleep(0.5)  # two more retry periods: every follower applied its share
        seen = [targets(r) for r in runtimes]
        assert runtimes[0].expanded is not None
        estate = {i.policy.target.resource_id.lower() for i in runtimes[0].expanded.targets}
        assert len(estate) > 200 and estate <= API  # what the selector finds now
        owned = [set(r.owner.owned()) for r in runtimes if r.owner is not None]
        assert set().union(*seen) == estate  # every target once ...
        assert sum(map(len, seen)) == len(estate)  # ... and none twice
        for mine, parts in zip(seen, owned, strict=True):
            assert mine == {app for app in estate if partition_of(app, PARTITIONS) in parts}
            assert mine, "each replica has a share of the estate"
        for runtime in runtimes:
            assert runtime.metrics.partitions_owned._value.get() == len(runtime.owner.owned())  # type: ignore[union-attr]
            # its own share: summed over the replicas, the estate once
            assert runtime.metrics.targets.labels("api-cpu")._value.get() == len(targets(runtime))
            ready, body = await runtime.readiness.check()
            assert body["checks"]["shards"]["owned"] == runtime.owner.owned()  # type: ignore[union-attr]
            # a share too small for one action is named, and the replica is not ready
            starved = len(runtime.owner.owned()) < 3  # type: ignore[union-attr]
            assert ready is not starved and body["checks"]["shards"]["ok"] is not starved
            if starved:
                assert "needs 3 partitions" in body["checks"]["shards"]["problem"]
        tg.cancel_scope.cancel()
