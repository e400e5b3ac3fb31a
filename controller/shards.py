"""Shards across replicas: N partitions of the estate, each owned through one blob lease.

When one process is not enough (or must not be a single point), replicas split the
targets: a target belongs to a partition (a stable hash of its resource id), and a
replica acts only for the partitions it owns. Ownership follows the scheme of Azure
Event Hubs' event processor: a blob per partition, claimed by the replica that takes its
lease (the service makes the claim atomic), renewed while held, released on shutdown;
every retry period each replica counts who holds what and evens the load — it claims
free partitions up to its fair share, and when none is free, takes one from the most
loaded replica by *breaking* that lease.

Every replica also holds a lease on a presence blob of its own, so one that holds no
partition yet is counted when the others work out their fair share; a new replica waits
one retry period after announcing itself before it claims anything, so replicas that
start together see each other and split the partitions without taking any back.

A break does not hand the partition over at once: the lease stays valid for the break
period (the lease's own duration), while the holder's next renewal fails and it stops
acting on that partition at once — or, if it is paused, at its renew deadline. Only
then can the thief acquire it. So a partition has at most one actor at any moment: the
holder acts only while its last renewal is younger than the renew deadline (10 s),
which is shorter than any way another replica can take the lease (15 s).

Leases live in the storage service's time, so this module waits in wall time whatever
clock the controller runs on (the monotonic source is injectable for tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

from controller.lease import LeaseTiming, new_lease

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

log = structlog.get_logger("remediator.shards")

FREE_STATES = frozenset({"available", "expired", "broken"})


def partition_of(resource_id: str, partitions: int) -> int:
    """The partition a resource belongs to: the same on every replica, for ever (Azure
    resource ids are case-insensitive, so the hash is of the lower-case id)."""
    digest = hashlib.sha256(resource_id.lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


@dataclass
class _Held:
    lease: BlobLeaseClient
    renewed_at: float  # monotonic time of the last good acquire or renewal


@dataclass(frozen=True)
class Claim:
    """What a listing shows of one partition."""

    partition: int
    state: str  # the blob lease's state: available, leased, expired, breaking, broken
    owner: str | None  # the replica that wrote itself on it when it took the lease


class PartitionOwner:
    """This replica's share of the partitions; ``may_act`` says whether it owns a target."""

    def __init__(
        self,
        container: ContainerClient,
        prefix: str,
        partitions: int,
        identity: str,
        timing: LeaseTiming,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._container = container
        self._prefix = prefix.rstrip("/")
        self.partitions = partitions
        self.identity = identity
        self._timing = timing
        self._monotonic = monotonic
        self._held: dict[int, _Held] = {}
        self.breaking: set[int] = set()  # partitions this replica broke, to claim once free
        self._presence: BlobLeaseClient | None = None  # the lease that says this one is alive

    # -- what the controller asks --------------------------------------------------------

    def owned(self) -> list[int]:
        """The partitions this replica may act for now."""
        now = self._monotonic()
        deadline = self._timing.renew_deadline
        return sorted(p for p, h in self._held.items() if now - h.renewed_at < deadline)

    def owns(self, partition: int) -> bool:
        held = self._held.get(partition)
        return (
            held is not None and self._monotonic() - held.renewed_at < self._timing.renew_deadline
        )

    def may_act(self, resource_id: str) -> str | None:
        """Why this replica may not act for ``resource_id`` now (a ``leader`` denial), or
        None. Asked right before each write, not only when deciding."""
        partition = partition_of(resource_id, self.partitions)
        if self.owns(partition):
            return None
        return f"standby: partition {partition} is not owned by {self.identity}"

    # -- the balancing loop --------------------------------------------------------------

    async def run(self) -> None:
        """Renew, balance and wait a retry period, until cancelled; then release."""
        await self.ensure_partitions()
        try:
            await self._announce()
            await anyio.sleep(self._timing.retry_period)  # let the others see this one
            while True:
                await self.round()
                await anyio.sleep(self._timing.retry_period)
        finally:
            with anyio.CancelScope(shield=True):
                await self.release_all()

    async def round(self) -> None:
        """One round: renew what is held, then claim or take toward a fair share."""
        await self._announce()
        await self._renew_all()
        claims = await self.listing()
        await self._balance(claims, await self.alive())

    def _presence_blob(self, identity: str) -> str:
        return f"{self._prefix}/replicas/{identity}"

    async def _announce(self) -> None:
        """Hold (or renew) the lease on this replica's presence blob."""
        if self._presence is not None:
            try:
                await self._presence.renew()
                return
            except AzureError:
                self._presence = None  # expired and taken meanwhile: take it again below
        blob = self._container.get_blob_client(self._presence_blob(self.identity))
        with contextlib.suppress(ResourceExistsError, HttpResponseError):
            await blob.upload_blob(b"", overwrite=False)
        lease = new_lease(blob)
        try:
            await lease.acquire(lease_duration=int(self._timing.duration))
        except AzureError:
            return  # a previous run under this name is still held: it counts as alive
        self._presence = lease

    async def alive(self) -> set[str]:
        """The replicas whose presence lease is held: every live replica, busy or not."""
        found = {self.identity}
        async for blob in self._container.list_blobs(name_starts_with=self._prefix + "/replicas/"):
            if str(blob.lease.state or "") in ("leased", "breaking"):
                found.add(str(blob.name).rsplit("/", 1)[1])
        return found

    def _blob(self, partition: int) -> str:
        return f"{self._prefix}/{partition:05d}"

    async def ensure_partitions(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()
        existing = {c.partition for c in await self.listing()}
        for partition in range(self.partitions):
            if partition not in existing:
                blob = self._container.get_blob_client(self._blob(partition))
                with contextlib.suppress(ResourceExistsError, HttpResponseError):
                    await blob.upload_blob(b"", overwrite=False)

    async def listing(self) -> list[Claim]:
        """Every partition blob with its lease state and the owner written on it."""
        claims = []
        async for blob in self._container.list_blobs(
            name_starts_with=self._prefix + "/", include=["metadata"]
        ):
            name = str(blob.name)[len(self._prefix) + 1 :]
            if not name.isdigit():
                continue  # a presence blob
            partition = int(name)
            if partition >= self.partitions:
                continue
            state = str(blob.lease.state or "available")
            owner = (blob.metadata or {}).get("owner") if state in ("leased", "breaking") else None
            claims.append(Claim(partition, state, owner))
        return claims

    async def _renew_all(self) -> None:
        for partition, held in list(self._held.items()):
            try:
                await held.lease.renew()
            except AzureError as exc:
                # broken by a replica taking its share, or expired while paused: stop now
                log.info("partition lost", partition=partition, error=type(exc).__name__)
                del self._held[partition]
                continue
            held.renewed_at = self._monotonic()

    async def _balance(self, claims: list[Claim], alive: set[str]) -> None:
        holders = Counter(c.owner for c in claims if c.owner is not None)
        holders[self.identity] = len(self._held)
        active = len(set(holders) | alive)
        fair = math.ceil(self.partitions / active)
        floor = self.partitions // active
        mine = len(self._held)
        free = [c.partition for c in claims if c.state in FREE_STATES]
        # claim what is free (first what this replica broke), up to the fair share
        free.sort(key=lambda p: (p not in self.breaking, p))
        for partition in free:
            if mine >= fair:
                break
            if await self._acquire(partition):
                mine += 1
        self.breaking &= {c.partition for c in claims if c.state == "breaking"}
        want = floor - mine - len(self.breaking)
        if want <= 0 or free:
            return
        # nothing free and below the floor: take from the most loaded, one lease each
        for claim in sorted(
            (c for c in claims if c.state == "leased" and c.owner not in (None, self.identity)),
            key=lambda c: (-holders[c.owner or ""], c.partition),
        ):
            if want <= 0:
                break
            owner = claim.owner or ""
            if holders[owner] <= floor:
                continue
            if await self._break(claim.partition):
                holders[owner] -= 1
                want -= 1

    async def _acquire(self, partition: int) -> bool:
        blob = self._container.get_blob_client(self._blob(partition))
        lease = new_lease(blob)
        try:
            await lease.acquire(lease_duration=int(self._timing.duration))
            await blob.set_blob_metadata({"owner": self.identity}, lease=lease)
        except AzureError:
            return False  # another replica was quicker
        self._held[partition] = _Held(lease, self._monotonic())
        self.breaking.discard(partition)
        log.info("partition claimed", partition=partition, identity=self.identity)
        return True

    async def _break(self, partition: int) -> bool:
        """Start taking ``partition``: its holder stops at its next renewal; it is free
        once the break period (the lease's duration) has passed."""
        blob = self._container.get_blob_client(self._blob(partition))
        try:
            await new_lease(blob).break_lease(lease_break_period=int(self._timing.duration))
        except AzureError:
            return False
        self.breaking.add(partition)
        log.info("partition taken for balance", partition=partition, identity=self.identity)
        return True

    async def release_all(self) -> None:
        """Hand every partition back at once (a clean stop): others claim within a round."""
        leases = [held.lease for held in self._held.values()]
        if self._presence is not None:
            leases.append(self._presence)
        for lease in leases:
            with contextlib.suppress(AzureError):  # else it expires on its own
                await lease.release()
        self._held.clear()
        self._presence = None
