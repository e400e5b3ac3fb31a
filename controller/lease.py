"""Leader election on an Azure Blob lease: with several replicas, one actor.

The numbers are client-go's: a 15 s lease, renewed every 2 s; a leader that has not
renewed for 10 s (the renew deadline) stops acting at once — before its lease can
expire and another replica can take it. Standbys keep observing, evaluating and
recording what they would do; only the leader's decisions may run. A leader that stops
cleanly releases the lease, so a standby takes over within one retry period; one that
dies is replaced within the lease time.

Being the leader is proven at two moments: at the guard step, and again right before
each write to Azure (:meth:`LeaderElector.write_check`), on this process's monotonic
clock. A process paused (SIGSTOP, a frozen VM) between the two did not renew either, so
the second check refuses a write it can no longer prove it may make. A renewal counts
from when it was sent: a pause while it was in flight is not mistaken for a fresh lease.
Each lease call is bounded (the retry period, at least 2 s) and the storage SDK does not
retry on its own, so a dead connection after a pause costs a retry, not the SDK's 15 s
backoff.

Leases live in the storage service's time, so this module waits in wall time whatever
clock the controller runs on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

if TYPE_CHECKING:  # the storage SDK (~20 MiB) is loaded only where leases are configured
    from azure.storage.blob.aio import BlobClient, BlobLeaseClient, ContainerClient

log = structlog.get_logger("remediator.lease")


def new_lease(blob: BlobClient) -> BlobLeaseClient:
    """A lease client on ``blob``; the storage SDK is imported with the first one (its
    container client, made by the runtime, has loaded it already)."""
    from azure.storage.blob.aio import BlobLeaseClient

    return BlobLeaseClient(blob)


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go's rule: duration > renew deadline > 1.2 × retry period
        if not self.duration > self.renew_deadline > 1.2 * self.retry_period:
            raise ValueError("lease timing must satisfy duration > renewDeadline > 1.2 × retry")


class LeaderElector:
    """Holds (or waits for) the lease; ``is_leader`` says whether this replica may act."""

    def __init__(
        self,
        container: ContainerClient,
        blob: str,
        identity: str,
        timing: LeaseTiming,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic  # injectable: the renew deadline is tested without waiting
        self._container = container
        self._blob = container.get_blob_client(blob)
        self.identity = identity
        self._timing = timing
        self._lease: BlobLeaseClient | None = None
        # monotonic time at which the last successful acquire or renewal was sent
        self._renewed_at: float | None = None
        self._blob_ready = False  # the container and the lease blob exist

    @property
    def is_leader(self) -> bool:
        """True only while the last renewal is younger than the renew deadline."""
        if self._lease is None or self._renewed_at is None:
            return False
        return self._monotonic() - self._renewed_at < self._timing.renew_deadline

    def status(self) -> str:
        return "leader" if self.is_leader else "standby"

    def standby_reason(self) -> str | None:
        """Why this replica may not act now (the ``leader`` guard), or None."""
        return None if self.is_leader else f"standby: {self.identity} does not hold the lease"

    def write_check(self) -> str | None:
        """Why a write may not be sent now, or None: asked right before each write.

        A monotonic comparison with the renew deadline, not a flag the renew task sets: a
        paused process's renew task did not run either.
        """
        if self.is_leader:
            return None
        if self._renewed_at is None:
            return f"not sent: leadership could not be proven ({self.identity} holds no lease)"
        age = self._monotonic() - self._renewed_at
        return (
            f"not sent: leadership could not be proven ({self.identity} last renewed its "
            f"lease {age:.0f}s ago, past the {self._timing.renew_deadline:g}s renew deadline)"
        )

    async def run(self) -> None:
        """Acquire, renew, and on cancellation release: until cancelled."""
        try:
            while True:
                if self._lease is None:
                    await self._try_acquire()
                else:
                    await self._renew()
                await anyio.sleep(self._timing.retry_period)
        finally:
            with anyio.CancelScope(shield=True):
                await self._release()

    @property
    def _call_timeout(self) -> float:
        """How long one lease call may take: a hung call must not hold up the next try."""
        return min(max(self._timing.retry_period, 2.0), self._timing.renew_deadline / 2)

    async def _ensure_blob(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()
        # it may exist already, possibly leased by another replica: fine
        with contextlib.suppress(ResourceExistsError, HttpResponseError):
            await self._blob.upload_blob(b"", overwrite=False)
        self._blob_ready = True

    async def acquire_once(self) -> bool:
        """One attempt to lead (``run --once``); True if this replica now holds the lease."""
        await self._try_acquire()
        return self.is_leader

    async def _try_acquire(self) -> None:
        lease = new_lease(self._blob)
        sent = self._monotonic()
        try:
            with anyio.fail_after(self._call_timeout):
                if not self._blob_ready:  # storage may be unreachable at first: retried
                    await self._ensure_blob()
                await lease.acquire(lease_duration=int(self._timing.duration))
        except ResourceExistsError:
            return  # another replica holds it: stay standby
        except ResourceNotFoundError:
            self._blob_ready = False  # deleted meanwhile: made again on the next try
            return
        except (AzureError, TimeoutError) as exc:
            log.warning("lease acquire failed", error=repr(exc))
            return
        self._lease, self._renewed_at = lease, sent
        log.info("became leader", identity=self.identity)

    async def _renew(self) -> None:
        assert self._lease is not None
        sent = self._monotonic()  # the lease runs from here, however late the answer comes
        try:
            with anyio.fail_after(self._call_timeout):
                await self._lease.renew()
        except (ResourceExistsError, ResourceNotFoundError) as exc:
            # taken by another replica, or broken: ours is gone whatever the deadline says
            log.warning("lost leadership", identity=self.identity, error=repr(exc))
            self._lease, self._renewed_at = None, None
            return
        except (AzureError, TimeoutError) as exc:
            # no answer: keep the lease id and try again; a renewal that gets through still
            # holds the lease (dropping it here would leave it held, and nobody leading,
            # until it expires). Past the deadline this replica does not act meanwhile.
            log.warning("lease renew failed", identity=self.identity, error=repr(exc))
            return
        self._renewed_at = sent

    async def _release(self) -> None:
        if self._lease is None:
            return
        # bounded: a stop must not wait on storage; unreleased, the lease expires on its own
        with contextlib.suppress(AzureError), anyio.move_on_after(self._call_timeout):
            await self._lease.release()
        self._lease, self._renewed_at = None, None
