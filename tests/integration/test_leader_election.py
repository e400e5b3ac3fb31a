"""One actor among replicas: leader election on a blob lease, against Azurite."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.abc import TaskStatus
from azure.core.pipeline import PipelineResponse
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from controller.audit.log import MemoryAudit, Record, read_records
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


class Cuttable:
    """A loopback TCP relay to Azurite that can be cut: storage that stops answering."""

    def __init__(self, port: int) -> None:
        self.port, self.cut = port, False

    async def serve(self, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if self.cut:
                return  # closed at once: the request gets no answer
            async with await anyio.connect_tcp("127.0.0.1", self.port) as upstream:

                async def pump(a: anyio.abc.SocketStream, b: anyio.abc.SocketStream) -> None:
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while not self.cut:
                            await b.send(await a.receive())
                    tg.cancel_scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump, client, upstream)
                    tg.start_soon(pump, upstream, client)


@pytest.fixture
async def relayed(storage: str) -> AsyncIterator[tuple[ContainerClient, Cuttable]]:
    """A container reached through a relay the test can cut, without the SDK's retries."""
    port = int(storage.split("127.0.0.1:")[1].split("/")[0])
    relay = Cuttable(port)
    async with anyio.create_task_group() as tg:
        relayed_port = await tg.start(relay.serve)
        url = storage.replace(f"127.0.0.1:{port}", f"127.0.0.1:{relayed_port}")
        name = f"lease{random.randrange(10**9)}"
        async with ContainerClient.from_connection_string(url, name, retry_total=0) as client:
            yield client, relay
        tg.cancel_scope.cancel()


async def test_a_leader_that_cannot_renew_stops_acting_by_the_deadline(
    relayed: tuple[ContainerClient, Cuttable],
) -> None:
    """Storage stops answering: renewals fail, and past the 10 s renew deadline it stops
    leading and refuses writes. It keeps its lease id, so once storage answers again the
    next renewal makes it leader at once (the lease is still its own), rather than leaving
    a held lease that nobody leads until it expires."""
    container, relay = relayed
    now = [1000.0]
    elector = LeaderElector(container, "leader", "a", FAST, monotonic=lambda: now[0])
    other = LeaderElector(container, "leader", "b", FAST)
    assert await elector.acquire_once()
    relay.cut = True
    await elector._renew()  # no answer; still inside the deadline
    now[0] += 9.0
    assert elector.is_leader and elector.write_check() is None
    now[0] += 1.5  # past the renew deadline, before the 15 s lease could run out
    await elector._renew()  # no answer again
    assert not elector.is_leader
    assert elector.standby_reason() == "standby: a does not hold the lease"
    assert elector.write_check() == (
        "not sent: leadership could not be proven (a last renewed its lease 10s ago, "
        "past the 10s renew deadline)"
    )
    relay.cut = False
    await elector._renew()
    assert elector.is_leader
    assert not await other.acquire_once()


async def test_a_broken_lease_stops_the_leader_at_once(container: ContainerClient) -> None:
    """Storage says the lease is no longer this replica's (broken, or taken): it stops
    leading at once, not at the renew deadline, since another may lead already."""
    now = [1000.0]
    elector = LeaderElector(container, "leader", "a", FAST, monotonic=lambda: now[0])
    assert await elector.acquire_once()
    await BlobLeaseClient(container.get_blob_client("leader")).break_lease(lease_break_period=0)
    other = LeaderElector(container, "leader", "b", FAST)
    assert await other.acquire_once()
    await elector._renew()
    assert not elector.is_leader and other.is_leader
    assert elector.write_check() == "not sent: leadership could not be proven (a holds no lease)"


async def test_a_renewal_counts_from_when_it_was_sent(storage: str) -> None:
    """Paused 12 s with a renewal in flight: the lease ran from when storage renewed it, so
    on waking the replica is past its renew deadline and does not act."""
    now = [1000.0]

    def paused_in_flight(response: PipelineResponse) -> None:  # type: ignore[type-arg]
        """The answer to a renewal arrives 12 s (of this process's clock) after it left."""
        if response.http_request.headers.get("x-ms-lease-action") == "renew":
            now[0] += 12.0

    name = f"lease{random.randrange(10**9)}"
    async with ContainerClient.from_connection_string(
        storage, name, raw_response_hook=paused_in_flight
    ) as container:
        elector = LeaderElector(container, "leader", "a", FAST, monotonic=lambda: now[0])
        assert await elector.acquire_once()
        await elector._renew()
        assert not elector.is_leader
        assert elector.write_check() is not None


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


class PausedAfterIntent(MemoryAudit):
    """An audit that stands for a process paused right after writing an intent: its
    monotonic clock jumps ``pause`` seconds past the point the guard step checked."""

    def __init__(self, monotonic: list[float], pause: float) -> None:
        super().__init__()
        self._monotonic, self._pause = monotonic, pause

    def append(self, record: Record) -> int:
        seq = super().append(record)
        if record.kind == "intent":
            self._monotonic[0] += self._pause
        return seq


async def test_a_leader_paused_between_its_guard_and_its_write_does_not_write(
    storage: str, tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The guard step saw a fresh lease; 11 s later (past the 10 s renew deadline, no renewal
    meanwhile: the renew task was paused too) the write is refused right before it is sent.
    The intent is closed as not run: no write, no failure for the breaker, no cooldown."""
    emu, base_url = emulator
    settings = emulator_settings(
        base_url,
        tmp_path,
        mode="live",
        leaderElection={"enabled": True, "connectionString": storage, "container": "paused"},
    )
    now = [1000.0]
    audit = PausedAfterIntent(now, pause=11.0)
    policy = make_policy(guards={"cooldown": "20m", "maxActionsPerHour": 10})
    loaded = [LoadedPolicy(policy, "test", 1)]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, audit=audit) as runtime,
        anyio.create_task_group() as tg,
    ):
        assert runtime.elector is not None
        runtime.elector._monotonic = lambda: now[0]  # the process's clock, paused at will
        assert await runtime.elector.acquire_once()
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=10), sleepers=1)
        tg.cancel_scope.cancel()
        memory = runtime.loop.reconcilers[0].memory
    assert emu.writes == 0
    intents = [r for r in audit.records if r["kind"] == "intent"]
    results = [r for r in audit.records if r["kind"] == "result"]
    assert len(intents) == 1 and len(results) == 1
    refused = results[0]
    assert refused["intent"] == intents[0]["seq"]
    assert refused["outcome"] is None and refused["guard"] == "leader"
    assert refused["reason"].startswith("not sent: leadership could not be proven")
    assert refused["breaker"]["consecutiveBad"] == 0
    assert memory.history == []  # neither a success nor a failure: nothing ran
    later = [r for r in audit.records if r["seq"] > refused["seq"]]
    assert later and all(r.get("guard") in ("leader", None) for r in later)
    assert not any(r["kind"] == "intent" for r in later)  # it stopped acting
