"""Cosmos DB throughput through ``azure-mgmt-cosmosdb`` (aio): read and change an offer.

An offer lives on a SQL database or a container. The service reports its numbers as
strings (``minimumThroughput``, ``offerReplacePending``), read here as numbers. A
change re-reads the offer first and writes only when it still moves the offer the
proposed way, so a replayed or repeated action is a no-op, and never while another
change is pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.actions.container_apps import split_id
from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.model import Outcome, OutcomeKind, Proposal, ResourceState, Throughput
from controller.policy.schema import Target
from controller.sizes import throughput_floor

if TYPE_CHECKING:  # the SDK is imported with the first Cosmos DB client (AzureClients)
    from azure.mgmt.cosmosdb.models import ThroughputSettingsGetResults


def _int(text: Any) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None


def to_throughput(offer: ThroughputSettingsGetResults) -> Throughput:
    resource = offer.resource
    if resource is None:
        raise ValueError("the throughput offer has no resource")
    autoscale = resource.autoscale_settings
    top = autoscale.max_throughput if autoscale is not None else None
    return Throughput(
        manual=None if top is not None else resource.throughput,
        autoscale_max=top,
        minimum=_int(resource.minimum_throughput) or 400,
        instant_maximum=_int(resource.instant_maximum_throughput),
        pending=str(resource.offer_replace_pending).lower() == "true",
    )


def _view(offer: Throughput) -> dict[str, int]:
    if offer.manual is not None:
        return {"throughput": offer.manual}
    return {"maxThroughput": int(offer.autoscale_max or 0)}


class CosmosActuator:
    """Reads and changes Cosmos DB SQL throughput offers (database or container)."""

    def __init__(self, clients: AzureClients, clock: Clock) -> None:
        self._clients = clients
        self._clock = clock

    async def read(self, target: Target) -> ResourceState:
        offer = await self._get(target)
        return ResourceState(target.resource_id, throughput=to_throughput(offer))

    async def raise_throughput(self, target: Target, proposal: Proposal) -> Outcome:
        """Raise manual RU/s or the autoscale maximum to the proposed value."""
        return await self._set(target, proposal, up=True)

    async def lower_throughput(self, target: Target, proposal: Proposal) -> Outcome:
        """Lower it toward the baseline (never below what the service allows)."""
        return await self._set(target, proposal, up=False)

    async def _set(self, target: Target, proposal: Proposal, *, up: bool) -> Outcome:
        before = to_throughput(await self._get(target))
        seen = _view(before)
        if before.pending:
            detail = "an offer change is still pending (offerReplacePending)"
            return Outcome(OutcomeKind.FAILED, seen, seen, detail, busy=True)
        key, wanted = next(iter(proposal.params.items()))
        if key not in seen:
            mode = "manual" if before.manual is not None else "autoscale"
            detail = f"the offer is {mode} now; the proposal was for {key}"
            return Outcome(OutcomeKind.FAILED, seen, seen, detail)
        current = seen[key]
        if not up:  # the service refuses less than its minimum, or an unrounded value
            wanted = max(wanted, throughput_floor(before.minimum, key == "maxThroughput"))
        if (current >= wanted) if up else (current <= wanted):
            return Outcome(OutcomeKind.SUCCEEDED, seen, seen, "already as proposed")
        resource: dict[str, Any] = (
            {"throughput": wanted}
            if key == "throughput"
            else {"autoscaleSettings": {"maxThroughput": wanted}}
        )
        await self._put(target, {"properties": {"resource": resource}})
        after = to_throughput(await self._get(target))
        note = "pending: a partition split takes hours" if after.pending else ""
        return Outcome(OutcomeKind.SUCCEEDED, seen, _view(after), note)

    async def _get(self, target: Target) -> ThroughputSettingsGetResults:
        sub, rg, account, database, container = _parts(target)
        client = await self._clients.cosmos(sub)
        sql = client.sql_resources

        async def get() -> ThroughputSettingsGetResults:
            if container is None:
                return await sql.get_sql_database_throughput(rg, account, database)
            return await sql.get_sql_container_throughput(rg, account, database, container)

        return await retry.call(self._clock, get)

    async def _put(self, target: Target, body: dict[str, Any]) -> None:
        sub, rg, account, database, container = _parts(target)
        client = await self._clients.cosmos(sub)
        sql = client.sql_resources

        from azure.mgmt.cosmosdb.models import ThroughputSettingsUpdateParameters

        # a model built from the mapping sends exactly the keys given
        params = ThroughputSettingsUpdateParameters(body)

        async def update() -> None:
            if container is None:
                poller = await sql.begin_update_sql_database_throughput(
                    rg, account, database, params
                )
            else:
                poller = await sql.begin_update_sql_container_throughput(
                    rg, account, database, container, params
                )
            await poller.result()

        await retry.call(self._clock, update, write=True)


def _parts(target: Target) -> tuple[str, str, str, str, str | None]:
    """(subscription, resource group, account, database, container or None)."""
    sub, rg, _ = split_id(target.resource_id)
    account, database, container = target.cosmos_parts
    return sub, rg, account, database, container
