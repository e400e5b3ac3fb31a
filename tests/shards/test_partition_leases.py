"""A partition's lease, call by call, against Azurite in one process: when a renewal
counts from, what storage that fails or hangs does, and claims from a stale listing.

The owner's monotonic clock is injected where the test is about the renew deadline, so
no test waits for a lease to run out.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from controller.lease import LeaseTiming
from controller.shards import PartitionOwner, partition_of
from tests.azurite import azurite, azurite_binary
from tests.shards.relay import Relay, relayed_container

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        azurite_binary() is None and not os.environ.get("CI"),
        reason="azurite-blob is not installed (make tools)",
    ),
]
FAST = LeaseTiming(duration=15, renew_deadline=10, retry_period=0.2)  # Azurite: 15 s at least
PARTITIONS = 2


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with azurite(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


@pytest.fixture
async def relayed(storage: str) -> AsyncIterator[tuple[ContainerClient, Relay]]:
    async with relayed_container(storage) as pair:
        yield pair


@pytest.fixture
async def container(storage: str) -> AsyncIterator[ContainerClient]:
    name = f"shards{random.randrange(10**9)}"
    async with ContainerClient.from_connection_string(storage, name) as client:
        yield client


def owner_of(
    container: ContainerClient, identity: str, now: list[float] | None = None
) -> PartitionOwner:
    clock: Callable[[], float] = (lambda: now[0]) if now is not None else anyio.current_time
    return PartitionOwner(container, "shards", PARTITIONS, identity, FAST, monotonic=clock)


def resource_in(partition: int) -> str:
    """An app whose target falls in ``partition``."""
    for i in range(1000):
        rid = f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/a{i}"
        if partition_of(rid, PARTITIONS) == partition:
            return rid
    raise AssertionError("no resource found")


async def claimed_all(owner: PartitionOwner) -> None:
    await owner.ensure_partitions()
    await owner.round()  # alone: its fair share is every partition
    assert owner.owned() == list(range(PARTITIONS))


def on_partition_lease(response: PipelineResponse, action: str) -> bool:  # type: ignore[type-arg]
    """Whether ``response`` answers the lease call ``action`` on a partition blob (not on
    a replica's presence blob)."""
    request = response.http_request
    return "/shards/0" in request.url and request.headers.get("x-ms-lease-action") == action


@pytest.mark.parametrize("action", ["renew", "acquire"])
async def test_a_lease_counts_from_when_the_call_was_sent(storage: str, action: str) -> None:
    """An answer that comes 12 s (of this replica's clock) after its request — a pause, a
    slow network — does not make a fresh lease: the service ran it from the request, so
    the replica is past its renew deadline and acts on neither partition."""
    now = [1000.0]
    slow = [action == "acquire"]

    def late(response: PipelineResponse) -> None:  # type: ignore[type-arg]
        if slow[0] and on_partition_lease(response, action):
            now[0] += 12.0

    name = f"shards{random.randrange(10**9)}"
    async with ContainerClient.from_connection_string(
        storage, name, raw_response_hook=late
    ) as container:
        owner = owner_of(container, "a", now)
        await owner.ensure_partitions()
        await owner.round()
        if action == "renew":
            assert owner.owned() == [0, 1]
            slow[0] = True
            await owner.round()
        assert now[0] >= 1012.0  # the answers came late
        assert owner.owned() == []
        assert owner.may_act(resource_in(0)) == "standby: partition 0 is not owned by a"


async def test_a_hung_storage_call_is_bounded(
    relayed: tuple[ContainerClient, Relay],
) -> None:
    """Storage takes requests and never answers: a round ends within its call timeouts
    (announce, renewals at once, listing: 2 s each), not the SDK's 60 s read timeout, and
    the partitions are kept to renew next round."""
    container, relay = relayed
    owner = owner_of(container, "a")
    await claimed_all(owner)
    relay.hang = True
    started = anyio.current_time()
    with anyio.fail_after(10):
        await owner.round()
    took = anyio.current_time() - started
    print(f"hung round: {took:.1f} s")
    assert took < 7.0
    assert owner.owned() == [0, 1]  # still inside the renew deadline
    relay.hang = False


async def test_storage_errors_neither_end_the_run_nor_drop_what_is_held(
    relayed: tuple[ContainerClient, Relay],
) -> None:
    """Storage unreachable at start: the run tries again every retry period and claims
    once it answers. Unreachable again for several rounds: the run goes on, keeps its
    leases, and owns them again at its first answered renewal."""
    container, relay = relayed
    owner = owner_of(container, "a")
    relay.cut = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(owner.run)
        await anyio.sleep(5 * FAST.retry_period)  # several failed starts
        relay.cut = False
        with anyio.fail_after(10):
            while owner.owned() != [0, 1]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        relay.cut = True
        await anyio.sleep(10 * FAST.retry_period)  # rounds that fail, inside the deadline
        assert owner.owned() == [0, 1]
        held = {p: h.lease.id for p, h in owner._held.items()}
        relay.cut = False
        renewed = anyio.current_time()
        with anyio.fail_after(5):
            while min(h.renewed_at for h in owner._held.values()) < renewed:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert {p: h.lease.id for p, h in owner._held.items()} == held  # the same leases
        assert owner.owned() == [0, 1]
        tg.cancel_scope.cancel()


async def test_a_renewal_without_answer_keeps_the_lease_and_stops_at_the_deadline(
    storage: str, relayed: tuple[ContainerClient, Relay]
) -> None:
    """No answer to a renewal: the lease id is kept; the replica acts until its renew
    deadline and not past it; the first answered renewal owns it again, and no other
    replica could take it meanwhile (it was this one's all along)."""
    container, relay = relayed
    now = [1000.0]
    owner = owner_of(container, "a", now)
    await claimed_all(owner)
    relay.cut = True
    await owner.round()
    now[0] += 9.0
    assert owner.owned() == [0, 1]
    now[0] += 1.5  # past the renew deadline, before the 15 s lease could run out
    await owner.round()
    assert owner.owned() == []
    assert owner.may_act(resource_in(1)) == "standby: partition 1 is not owned by a"
    relay.cut = False
    await owner.round()
    assert owner.owned() == [0, 1]
    async with ContainerClient.from_connection_string(storage, container.container_name) as direct:
        other = owner_of(direct, "b")
        claims = await other.listing()
        assert [c.state for c in claims] == ["leased", "leased"]
        assert [await other._acquire(c) for c in claims] == [False, False]


async def test_a_lease_storage_says_is_gone_stops_at_once(container: ContainerClient) -> None:
    """Broken and taken by another replica: the next renewal drops it at once, inside the
    renew deadline, since the other may act already."""
    now = [1000.0]
    owner = owner_of(container, "a", now)
    await claimed_all(owner)
    blob = container.get_blob_client("shards/00000")
    await BlobLeaseClient(blob).break_lease(lease_break_period=0)
    other = owner_of(container, "b")
    assert await other._acquire(next(c for c in await other.listing() if c.partition == 0))
    await owner.round()
    assert owner.owned() == [1] and 0 not in owner._held
    assert other.owns(0)


async def test_a_claim_whose_owner_cannot_be_written_lets_the_lease_go(storage: str) -> None:
    """The lease is taken but writing the owner on the blob fails: the lease is released,
    not held unseen (and unrenewed) until it expires; another replica claims it at once."""
    fail = [True]

    def dropped(request: PipelineRequest) -> None:  # type: ignore[type-arg]
        if fail[0] and "comp=metadata" in request.http_request.url:
            fail[0] = False
            raise ServiceRequestError("connection reset while writing the owner")

    name = f"shards{random.randrange(10**9)}"
    async with (
        ContainerClient.from_connection_string(
            storage, name, raw_request_hook=dropped, retry_total=0
        ) as flaky,
        ContainerClient.from_connection_string(storage, name) as direct,
    ):
        owner = owner_of(flaky, "a")
        await owner.ensure_partitions()
        claim = next(c for c in await owner.listing() if c.partition == 0)
        assert not await owner._acquire(claim)
        assert not fail[0] and owner.owned() == []
        other = owner_of(direct, "b")
        assert await other._acquire(claim)
        assert other.owned() == [0]


async def test_a_stale_listing_neither_claims_nor_breaks(container: ContainerClient) -> None:
    """Claims and breaks are conditional on the ETag the listing showed: after the
    partition changed hands, a claim or a break decided from the old listing fails and
    the new owner keeps it."""
    a, b, c = (owner_of(container, name) for name in "abc")
    await a.ensure_partitions()
    free = next(x for x in await a.listing() if x.partition == 0)
    assert await b._acquire(free)  # b takes it, writing itself on it, then lets it go
    await b.release_all()
    assert not await a._acquire(free)  # free again, but not as the listing saw it
    seen = next(x for x in await a.listing() if x.partition == 0)
    assert await c._acquire(seen)
    held_by_c = next(x for x in await a.listing() if x.partition == 0)
    assert held_by_c.owner == "c"
    await c.release_all()
    assert await b._acquire(held_by_c)  # c let go; b claims it anew, from a fresh listing
    assert not await a._break(held_by_c)  # c's lease is not the one held now
    await b.round()
    assert b.owns(0)
    now_held = next(x for x in await a.listing() if x.partition == 0)
    assert now_held.state == "leased" and now_held.owner == "b"
    assert await a._break(now_held)
