"""Azure Cache for Redis actions through ``azure-mgmt-redis`` (aio).

Like the Container Apps actuator, each action re-reads the cache first, writes only
when the cache is not already as proposed, and reads back what is there for the
audit's ``after``. Redis refuses management operations while one is running (a scale
takes many minutes), so a cache that is not ``Succeeded`` is reported *busy*: nothing
ran, and the next pass tries again, rather than a failed action.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from azure.core.exceptions import HttpResponseError

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.model import CacheSku, Outcome, OutcomeKind, Proposal, ResourceState
from controller.policy.schema import Target

from .container_apps import split_id

if TYPE_CHECKING:  # the SDK is imported with the first Redis client (AzureClients)
    from azure.mgmt.redis.models import RedisResource

_TIERS = {"Basic": 0, "Standard": 1, "Premium": 2}
# Provisioning states a cache does not come back from by waiting: a write is refused for
# good, not busy. Every other state but Succeeded (Scaling, Updating, Patching …) is an
# operation in progress.
_STUCK = frozenset({"Failed", "Disabled", "Deleting"})


class RedisActuator:
    """Reads, scales and reboots Azure Cache for Redis instances."""

    def __init__(self, clients: AzureClients, clock: Clock) -> None:
        self._clients = clients
        self._clock = clock

    async def read(self, target: Target) -> ResourceState:
        """The cache's SKU, provisioning state, tags and last change.

        ``systemData`` is not on the SDK's ``RedisResource`` model, so the last change is
        read from the response body itself.
        """
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.redis(sub)

        def with_body(response: Any, cache: RedisResource, _: Any) -> tuple[RedisResource, Any]:
            return cache, response.http_response.json()

        async def get() -> tuple[RedisResource, Any]:
            # ``cls`` changes what get() returns; the SDK's stubs cannot say so
            answer = await client.redis.get(rg, name, cls=with_body)
            return cast("tuple[RedisResource, Any]", answer)

        cache, body = await retry.call(self._clock, get)
        return to_state(target.resource_id, cache, body)

    async def scale_cache(self, target: Target, proposal: Proposal) -> Outcome:
        """Change the cache's SKU to ``params`` = {"sku", "family", "capacity"}.

        Nothing is written when the cache already has that SKU, or, for a scale up
        (larger than the proposal's ``before``), a larger one in the same tier: someone
        got there first. The write is a plain dict, not ``RedisUpdateParameters``: that
        model serialises its defaults (``enableNonSslPort: false``, ``publicNetworkAccess:
        "Enabled"``, ``disableAccessKeyAuthentication: false``), so resizing a hardened
        cache would silently re-open it. The SDK maps the dict onto the model's wire
        names and sends ``{"properties": {"sku": …}}`` and nothing else. The PATCH is
        answered ``Scaling``, and Azure takes many minutes (often 20+) to finish: longer
        than an action may hold the loop. So the action ends once the service has accepted
        the change; later passes read ``Scaling`` (no new rung is proposed meanwhile), and
        the verification judges it after the policy's ``settle`` — set that to cover a
        scale (``verification: {settle: 30m}``).
        """
        wanted = CacheSku(
            str(proposal.params["sku"]),
            str(proposal.params["family"]),
            int(proposal.params["capacity"]),
        )
        state = await self.read(target)
        before = sku_view(state.cache)
        if state.cache is not None and _covers(state.cache, wanted, _scaling_up(proposal, wanted)):
            return Outcome(OutcomeKind.SUCCEEDED, before, before, "already as proposed")
        refused = _not_ready(state, before)
        if refused is not None:
            return refused
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.redis(sub)
        sku = {"name": wanted.name, "family": wanted.family, "capacity": wanted.capacity}
        # Any: the SDK's signature names only its model, whose defaults must not be sent
        body: Any = {"properties": {"sku": sku}}
        try:
            # begin_update returns once the PATCH is accepted; the poller is not awaited
            await retry.call(
                self._clock, lambda: client.redis.begin_update(rg, name, body), write=True
            )
        except HttpResponseError as exc:
            busy = _busy(exc, before)
            if busy is None:
                raise
            return busy
        after = await self.read(target)
        landed = after.cache_state in (None, "Succeeded")
        note = "" if landed else f"accepted; the cache is {after.cache_state} to the new size"
        return Outcome(OutcomeKind.SUCCEEDED, before, sku_view(after.cache), note)

    async def reboot_cache(self, target: Target, proposal: Proposal) -> Outcome:
        """Reboot the cache's nodes: ``params`` = {"rebootType": AllNodes | PrimaryNode |
        SecondaryNode, "shardId"?: int}.

        ``RedisRebootParameters`` has no defaults, so the model sends only what is set
        (``{"rebootType": "AllNodes"}``). A reboot is not idempotent: it is sent once,
        retried only when the service says it did not act.
        """
        reboot_type = str(proposal.params.get("rebootType", "AllNodes"))
        shard = proposal.params.get("shardId")
        asked: dict[str, Any] = {"rebootType": reboot_type}
        if shard is not None:
            asked["shardId"] = int(shard)
        state = await self.read(target)
        refused = _not_ready(state, asked)
        if refused is not None:
            return refused
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.redis(sub)
        from azure.mgmt.redis.models import RedisRebootParameters

        parameters = RedisRebootParameters(reboot_type=reboot_type, shard_id=asked.get("shardId"))
        try:
            answer = await retry.call(
                self._clock, lambda: client.redis.force_reboot(rg, name, parameters), write=True
            )
        except HttpResponseError as exc:
            busy = _busy(exc, asked)
            if busy is None:
                raise
            return busy
        return Outcome(
            OutcomeKind.SUCCEEDED, asked, {**asked, "rebooted": True}, answer.message or ""
        )


def sku_view(sku: CacheSku | None) -> dict[str, Any]:
    """A SKU in the proposal's own terms (its params' keys), for audit before/after."""
    if sku is None:
        return {}
    return {"sku": sku.name, "family": sku.family, "capacity": sku.capacity}


def to_state(resource_id: str, cache: RedisResource, body: Any = None) -> ResourceState:
    """The planner's view of a cache."""
    sku = cache.sku
    system = body.get("systemData") if isinstance(body, dict) else None
    modified = system.get("lastModifiedAt") if isinstance(system, dict) else None
    return ResourceState(
        resource_id=resource_id,
        tags=dict(cache.tags or {}),
        cache=CacheSku(str(sku.name), str(sku.family), int(sku.capacity)) if sku else None,
        cache_state=str(cache.provisioning_state) if cache.provisioning_state else None,
        last_modified=_moment(modified),
    )


def _scaling_up(proposal: Proposal, wanted: CacheSku) -> bool:
    """Whether the proposal moves up from the SKU it was planned against."""
    try:
        planned_from = CacheSku(
            str(proposal.before["sku"]),
            str(proposal.before["family"]),
            int(proposal.before["capacity"]),
        )
    except (KeyError, TypeError, ValueError):
        return False  # not known: only the very SKU counts as already there
    return _order(wanted) > _order(planned_from)


def _covers(current: CacheSku, wanted: CacheSku, scaling_up: bool) -> bool:
    if current == wanted:
        return True
    same_tier = (current.name, current.family) == (wanted.name, wanted.family)
    return scaling_up and same_tier and current.capacity > wanted.capacity


def _order(sku: CacheSku) -> tuple[int, int]:
    return _TIERS.get(sku.name, -1), sku.capacity


def _not_ready(state: ResourceState, seen: dict[str, Any]) -> Outcome | None:
    """Why nothing may be written now: busy while an operation runs, failed when the
    cache cannot take one at all; None when it is ``Succeeded``."""
    if state.cache_state == "Succeeded":
        return None
    detail = f"the cache is {state.cache_state or 'in an unknown state'}"
    if state.cache_state in _STUCK:
        return Outcome(OutcomeKind.FAILED, seen, seen, f"{detail}: it takes no changes")
    return Outcome(OutcomeKind.FAILED, seen, seen, f"{detail}: retrying later", busy=True)


def _busy(exc: HttpResponseError, seen: dict[str, Any]) -> Outcome | None:
    """A 409: Redis answers ``Conflict`` while another management operation runs (the
    state changed between our read and our write). Busy, not failed."""
    if exc.status_code != 409 and not retry.is_busy(exc):
        return None
    code = exc.error.code if exc.error else "Conflict"
    return Outcome(OutcomeKind.FAILED, seen, seen, f"the cache is busy ({code})", busy=True)


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
