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
which is shorter than any way another replica can take the lease (15 s). A renewal (or
acquire) counts from when it was *sent*, since the service runs the lease from then: an
answer that comes late (a pause, a slow network) never stretches ownership past the
lease. Each storage call is bounded, so a hung one costs a retry, not the SDK's
read timeout.

A storage error never stops the replica: a round that cannot list or announce is logged
and tried again a retry period later, keeping what is held (each lease still counts
only until its renew deadline). A renewal that gets no answer keeps the lease id, to be
renewed next round (the lease may well still be this replica's); only storage saying
the lease is another's (taken, broken, gone) drops it at once. Claims and breaks are
conditional on the blob's ETag in the listing they were decided from, so a stale
listing cannot take a partition whose owner has changed since.

Leases live in the storage service's time, so this module waits in wall time whatever
clock the controller runs on (the monotonic source is injectable for tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from controller.lease import LeaseTiming, new_lease

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

log = structlog.get_logger("remediator.shards")

FREE_STATES = frozenset({"available", "expired", "broken"})
# what a storage call may raise that says nothing about who holds a lease: no answer, a
# dropped connection, a 5xx. A round that meets one tries again a retry period later.
STORAGE_ERRORS = (AzureError, TimeoutError, OSError)


def _lease_is_gone(exc: BaseException) -> bool:
    """Whether storage *answered* that a lease is not this replica's any more: taken by
    another (409 lease id mismatch), broken (409), the blob gone (404), or a condition
    that failed (412). Anything else is no answer: the lease may still be held."""
    if isinstance(exc, (ResourceExistsError, ResourceNotFoundError)):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in (404, 409, 412)


def partition_of(resource_id: str, partitions: int) -> int:
    """The partition a resource belongs to: the same on every replica, for ever (Azure
    resource ids are case-insensitive, so the hash is of the lower-case id)."""
    digest = hashlib.sha256(resource_id.lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


@dataclass
class _Held:
    lease: BlobLeaseClient
    renewed_at: float  # monotonic time at which the last good acquire or renewal was sent


@dataclass(frozen=True)
class Claim:
    """What a listing shows of one partition."""

    partition: int
    state: str  # the blob lease's state: available, leased, expired, breaking, broken
    owner: str | None  # the replica that wrote itself on it when it took the lease
    # the blob's ETag then: a claim or a break is conditional on it (lease calls leave a
    # blob's ETag as it is; writing the owner on it changes it)
    etag: str


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
        """Renew, balance and wait a retry period, until cancelled; then release.

        Storage that fails or does not answer is tried again every retry period, at
        start too: one blip must not end the controller (and every replica with it)."""
        try:
            while True:  # the container and partition blobs, before anything else
                if await self._tried("partition blobs not ready", self.ensure_partitions):
                    break
                await anyio.sleep(self._timing.retry_period)
            await self._announce()
            await anyio.sleep(self._timing.retry_period)  # let the others see this one
            while True:
                await self.round()
                await anyio.sleep(self._timing.retry_period)
        finally:
            with anyio.CancelScope(shield=True):
                await self.release_all()

    async def round(self) -> None:
        """One round: renew what is held, then claim or take toward a fair share. A
        listing that fails skips the balancing, keeping what is held."""
        await self._renew_all()  # first: a lease's age counts from when its renewal left
        await self._announce()
        try:
            claims, alive = await self.listing(), await self.alive()
        except STORAGE_ERRORS as exc:
            log.warning("shard round skipped", identity=self.identity, error=repr(exc))
            return
        await self._balance(claims, alive)

    @property
    def _call_timeout(self) -> float:
        """How long one storage call may take (as the leader elector's): a hung call must
        not hold up the round, nor the renewals of the partitions after it."""
        return min(max(self._timing.retry_period, 2.0), self._timing.renew_deadline / 2)

    async def _tried(self, what: str, step: Callable[[], Awaitable[None]]) -> bool:
        """Run ``step``; a storage error is logged (``what``) and reported, not raised."""
        try:
            await step()
        except STORAGE_ERRORS as exc:
            log.warning(what, identity=self.identity, error=repr(exc))
            return False
        return True

    def _presence_blob(self, identity: str) -> str:
        return f"{self._prefix}/replicas/{identity}"

    async def _announce(self) -> None:
        """Hold (or renew) the lease on this replica's presence blob; a failure is logged
        and tried again next round (the others count this replica while it lasts)."""
        await self._tried("presence not renewed", self._hold_presence)

    async def _hold_presence(self) -> None:
        if self._presence is not None:
            try:
                with anyio.fail_after(self._call_timeout):
                    await self._presence.renew()
                return
            except STORAGE_ERRORS as exc:
                if not _lease_is_gone(exc):
                    raise  # no answer: the lease id is kept for the next round
                self._presence = None  # expired and taken meanwhile: take it again below
        blob = self._container.get_blob_client(self._presence_blob(self.identity))
        lease = new_lease(blob)
        with anyio.fail_after(self._call_timeout):
            with contextlib.suppress(ResourceExistsError, HttpResponseError):
                await blob.upload_blob(b"", overwrite=False)
            try:
                await lease.acquire(lease_duration=int(self._timing.duration))
            except HttpResponseError as exc:
                if not _lease_is_gone(exc):
                    raise
                return  # a previous run under this name is still held: it counts as alive
        self._presence = lease

    async def alive(self) -> set[str]:
        """The replicas whose presence lease is held: every live replica, busy or not."""
        found = {self.identity}
        with anyio.fail_after(self._call_timeout):
            async for blob in self._container.list_blobs(
                name_starts_with=self._prefix + "/replicas/"
            ):
                if str(blob.lease.state or "") in ("leased", "breaking"):
                    found.add(str(blob.name).rsplit("/", 1)[1])
        return found

    def _blob(self, partition: int) -> str:
        return f"{self._prefix}/{partition:05d}"

    async def ensure_partitions(self) -> None:
        """Make the container and every partition blob that does not exist yet."""
        with anyio.fail_after(self._call_timeout), contextlib.suppress(ResourceExistsError):
            await self._container.create_container()
        existing = {c.partition for c in await self.listing()}
        for partition in range(self.partitions):
            if partition not in existing:
                blob = self._container.get_blob_client(self._blob(partition))
                with (
                    anyio.fail_after(self._call_timeout),
                    contextlib.suppress(ResourceExistsError, HttpResponseError),
                ):
                    await blob.upload_blob(b"", overwrite=False)

    async def listing(self) -> list[Claim]:
        """Every partition blob with its lease state and the owner written on it."""
        claims = []
        with anyio.fail_after(self._call_timeout):
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
                leased = state in ("leased", "breaking")
                owner = (blob.metadata or {}).get("owner") if leased else None
                claims.append(Claim(partition, state, owner, str(blob.etag)))
        return claims

    async def _renew_all(self) -> None:
        """Renew every held lease at once, each bounded: a slow one delays no other."""
        async with anyio.create_task_group() as tg:
            for partition, held in list(self._held.items()):
                tg.start_soon(self._renew, partition, held)

    async def _renew(self, partition: int, held: _Held) -> None:
        sent = self._monotonic()  # the lease runs from here, however late the answer comes
        try:
            with anyio.fail_after(self._call_timeout):
                await held.lease.renew()
        except STORAGE_ERRORS as exc:
            if _lease_is_gone(exc):
                # broken by a replica taking its share, or taken after it expired: stop now
                log.info("partition lost", partition=partition, error=type(exc).__name__)
                if self._held.get(partition) is held:
                    del self._held[partition]
                return
            # no answer: keep the lease id and renew next round (dropping it would leave a
            # lease held that nobody acts on, nor can take, until it expires); past the
            # renew deadline this replica does not act on it meanwhile
            log.warning("partition renew failed", partition=partition, error=repr(exc))
            return
        held.renewed_at = sent

    async def _balance(self, claims: list[Claim], alive: set[str]) -> None:
        holders = Counter(c.owner for c in claims if c.owner is not None)
        holders[self.identity] = len(self._held)
        active = len(set(holders) | alive)
        fair = math.ceil(self.partitions / active)
        floor = self.partitions // active
        mine = len(self._held)
        free = [c for c in claims if c.state in FREE_STATES and c.partition not in self._held]
        # claim what is free (first what this replica broke), up to the fair share
        free.sort(key=lambda c: (c.partition not in self.breaking, c.partition))
        for claim in free:
            if mine >= fair:
                break
            if await self._acquire(claim):
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
            if await self._break(claim):
                holders[owner] -= 1
                want -= 1

    async def _acquire(self, claim: Claim) -> bool:
        """Claim a partition the listing showed free, if it has not changed since (its
        ETag): a stale listing must not take a lease another replica just moved."""
        partition = claim.partition
        blob = self._container.get_blob_client(self._blob(partition))
        lease = new_lease(blob)
        sent = self._monotonic()  # the lease runs from here, however late the answer comes
        try:
            with anyio.fail_after(self._call_timeout):
                await lease.acquire(
                    lease_duration=int(self._timing.duration),
                    etag=claim.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except STORAGE_ERRORS as exc:
            if not _lease_is_gone(exc):  # no answer: it may be held under this id, untracked
                log.warning("partition claim failed", partition=partition, error=repr(exc))
                await self._let_go(lease)
            return False  # else another replica was quicker, or the listing is stale
        try:
            with anyio.fail_after(self._call_timeout):
                await blob.set_blob_metadata({"owner": self.identity}, lease=lease)
        except STORAGE_ERRORS as exc:
            # held, but the listing would name the previous owner: let it go (a later
            # round claims it again) rather than hold a lease nobody sees or renews
            log.warning("partition owner not written", partition=partition, error=repr(exc))
            await self._let_go(lease)
            return False
        self._held[partition] = _Held(lease, sent)
        self.breaking.discard(partition)
        log.info("partition claimed", partition=partition, identity=self.identity)
        return True

    async def _break(self, claim: Claim) -> bool:
        """Start taking a partition: its holder stops at its next renewal; it is free once
        the break period (the lease's duration) has passed. Only the lease the listing
        showed is broken (its ETag): not one another replica has taken since."""
        blob = self._container.get_blob_client(self._blob(claim.partition))
        try:
            with anyio.fail_after(self._call_timeout):
                await new_lease(blob).break_lease(
                    lease_break_period=int(self._timing.duration),
                    etag=claim.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except STORAGE_ERRORS:
            return False
        self.breaking.add(claim.partition)
        log.info("partition taken for balance", partition=claim.partition, identity=self.identity)
        return True

    async def _let_go(self, lease: BlobLeaseClient) -> None:
        """Release ``lease``, bounded; unreleased, it expires on its own."""
        with contextlib.suppress(*STORAGE_ERRORS), anyio.move_on_after(self._call_timeout):
            await lease.release()

    async def release_all(self) -> None:
        """Hand every partition back at once (a clean stop): others claim within a round."""
        leases = [held.lease for held in self._held.values()]
        if self._presence is not None:
            leases.append(self._presence)
        self._held.clear()  # released or not, this replica acts on none of them now
        self._presence = None
        async with anyio.create_task_group() as tg:  # a stop waits one call timeout at most
            for lease in leases:
                tg.start_soon(self._let_go, lease)
