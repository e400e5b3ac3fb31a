"""One actor among replicas: leader election on a blob lease, against Azurite."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from controller.audit.log import read_records
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.lease import LeaderElector, LeaseTiming
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from tests.azurite import azurite, azurite_binary
from tests.conftest import START, emulator_settings, make_policy

pytestmark = [
    pytest.mark.anyio,
    # skipped without Azurite on a workstation; in CI (CI=true) a missing Azurite fails
    pytest.mark.skipif(
        azurite_binary() is None and not os.environ.get("CI"),
        reason="azurite-blob is not installed (make tools)",
    ),
]
FAST = LeaseTiming(duration=15, renew_deadline=10, retry_period=0.2)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with azurite(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


@pytest.fixture
async def container(storage: str) -> AsyncIterator[ContainerClient]:
    name = f"lease{random.randrange(10**9)}"
    async with ContainerClient.from_connection_string(storage, name) as client:
        yield client


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll state that lives in Azurite (no event to wait on), a few ms at a time."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_exactly_one_leads_and_a_clean_stop_hands_over(container: ContainerClient) -> None:
    """Two electors on one blob: one leads; when it stops it releases, and the other leads."""
    a = LeaderElector(container, "leader", "a", FAST)
    b = LeaderElector(container, "leader", "b", FAST)
    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()

        async def run_a() -> None:
            with first:
                await a.run()

        tg.start_soon(run_a)
        await wait_until(lambda: a.is_leader)
        tg.start_soon(b.run)
        await anyio.sleep(0.5)  # several of b's retry periods
        assert a.is_leader and not b.is_leader
        first.cancel()
        await wait_until(lambda: b.is_leader, seconds=2)
        assert not a.is_leader
        tg.cancel_scope.cancel()


async def test_a_leader_that_cannot_renew_stops_acting_by_the_deadline(
    container: ContainerClient,
) -> None:
    """Its lease broken, renewals fail: past the 10 s renew deadline it stops leading."""
    now = [1000.0]
    elector = LeaderElector(container, "leader", "a", FAST, monotonic=lambda: now[0])
    assert await elector.acquire_once()
    await BlobLeaseClient(container.get_blob_client("leader")).break_lease(lease_break_period=0)
    await elector._renew()  # fails; still inside the deadline
    now[0] += 9.0
    assert elector.is_leader
    now[0] += 1.5  # past the renew deadline, before the 15 s lease could run out
    assert not elector.is_leader
    assert elector.standby_reason() == "standby: a does not hold the lease"


async def test_two_controllers_on_one_emulator_only_the_leader_acts(
    storage: str, tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Both see the spike and decide; only the lease holder writes, the other records why not."""
    emu, base_url = emulator
    election = {
        "enabled": True,
        "connectionString": storage,
        "container": "election",
        "retryPeriod": "200ms",
    }
    runs = []
    for name in ("one", "two"):
        settings = emulator_settings(
            base_url,
            tmp_path / name,
            mode="live",
            leaderElection={**election, "identity": name},
        )
        runs.append(settings)
    policy = make_policy(guards={"cooldown": "20m", "maxActionsPerHour": 10})
    loaded = [LoadedPolicy(policy, "test", 1)]
    async with (
        open_runtime(runs[0], clock=clock, policies=loaded, rng=random.Random(1)) as one,
        open_runtime(runs[1], clock=clock, policies=loaded, rng=random.Random(2)) as two,
        anyio.create_task_group() as tg,
    ):
        assert one.elector is not None and two.elector is not None
        tg.start_soon(one.elector.run)
        await wait_until(lambda: one.elector is not None and one.elector.is_leader)
        tg.start_soon(two.elector.run)
        tg.start_soon(one.loop.run)
        tg.start_soon(two.loop.run)
        await clock.drive(START + timedelta(minutes=10), sleepers=2)
        tg.cancel_scope.cancel()
    leader = list(read_records(runs[0].audit_path))
    standby = list(read_records(runs[1].audit_path))
    assert [r["action"] for r in leader if r["kind"] == "result"] == ["scaleOut"]
    assert not any(r["kind"] in ("intent", "result") for r in standby)
    assert any(r["guard"] == "leader" for r in standby)
    assert emu.writes == 1


async def test_a_new_leader_honours_the_cooldown_its_predecessor_started(
    storage: str, tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Failover mid-incident: the first leader scales out and stops; the second, whose own
    audit knows nothing of that, still waits out the cooldown because the app's
    ``systemData.lastModifiedAt`` says it was just changed."""
    emu, base_url = emulator
    election = {
        "enabled": True,
        "connectionString": storage,
        "container": "failover",
        "retryPeriod": "200ms",
    }
    runs = [
        emulator_settings(
            base_url, tmp_path / name, mode="live", leaderElection={**election, "identity": name}
        )
        for name in ("one", "two")
    ]
    # the spike needs more than one step: the ladder would go on scaling out at once
    policy = make_policy(
        guards={"cooldown": "15m", "maxActionsPerHour": 10},
        verification={"settle": "1m"},
        remediation=[{"scaleOut": {"step": 1, "maxReplicas": 8}}],
    )
    loaded = [LoadedPolicy(policy, "test", 1)]
    async with (
        open_runtime(runs[0], clock=clock, policies=loaded, rng=random.Random(1)) as one,
        open_runtime(runs[1], clock=clock, policies=loaded, rng=random.Random(2)) as two,
        anyio.create_task_group() as tg,
    ):
        assert one.elector is not None and two.elector is not None
        first = anyio.CancelScope()

        async def first_replica() -> None:
            assert one.elector is not None
            with first:
                async with anyio.create_task_group() as inner:
                    inner.start_soon(one.elector.run)
                    inner.start_soon(one.loop.run)

        tg.start_soon(first_replica)
        await wait_until(lambda: one.elector is not None and one.elector.is_leader)
        tg.start_soon(two.elector.run)
        tg.start_soon(two.loop.run)
        await clock.drive(
            START + timedelta(minutes=30), sleepers=2, stop_when=lambda: emu.writes > 0
        )
        acted_at = clock.now()
        first.cancel()  # the first leader stops; its lease is released
        await wait_until(lambda: two.elector is not None and two.elector.is_leader)
        await clock.drive(acted_at + timedelta(minutes=25), sleepers=1)
        tg.cancel_scope.cancel()
    taken_over = list(read_records(runs[1].audit_path))
    results = [r for r in taken_over if r["kind"] == "result"]
    held = [
        r for r in taken_over if r.get("guard") == "cooldown" and r["ts"] > acted_at.isoformat()
    ]
    assert held and "resource was changed" in held[0]["reason"]
    assert results, "the new leader acts once the cooldown is over"
    first_own = min(r["ts"] for r in results)
    assert first_own >= (acted_at + timedelta(minutes=15) - timedelta(seconds=90)).isoformat()
