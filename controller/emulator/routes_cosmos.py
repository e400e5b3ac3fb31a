"""Cosmos DB throughput routes: get/put a database's or container's offer, migrate it,
and the ``operationsStatus`` long-running operation both answer with."""

from __future__ import annotations

import uuid

from aiohttp import web

from .cosmos import CosmosOffer, CosmosOperation, Offer
from .routing import Route, route
from .timeutil import format_datetime
from .wire import error, json_response, read_json
from .world import World

_ACCOUNT = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.DocumentDB/databaseAccounts/(?P<acct>[^/]+)"
)
_OFFER = (
    _ACCOUNT
    + r"/sqlDatabases/(?P<db>[^/]+)(?:/containers/(?P<c>[^/]+))?/throughputSettings/default"
)
_STATUS = (
    r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.DocumentDB/locations/(?P<loc>[^/]+)"
    r"/operationsStatus/(?P<op>[^/]+)"
)


def _find(world: World, p: dict[str, str]) -> CosmosOffer | None:
    rid = (
        f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}/providers/Microsoft.DocumentDB"
        f"/databaseAccounts/{p['acct']}/sqlDatabases/{p['db']}"
    )
    if p.get("c"):
        rid += f"/containers/{p['c']}"
    return world.offers.get(rid.lower())


def _not_found(p: dict[str, str]) -> web.Response:
    # Cosmos DB's RP answers errors with top-level code/message
    what = p.get("c") or p["db"]
    return json_response(
        {"code": "NotFound", "message": f"Resource '{what}' with throughput was not found."},
        status=404,
    )


def _bad(message: str) -> web.Response:
    return json_response({"code": "BadRequest", "message": message}, status=400)


async def get_offer(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    offer = _find(world, p)
    if offer is None:
        return _not_found(p)
    return json_response(offer.throughput_json(world.now()))


def _accept(
    world: World, request: web.Request, offer: CosmosOffer, change: Offer | str
) -> web.StreamResponse:
    now = world.now()
    op = CosmosOperation(
        id=str(uuid.uuid4()),
        offer=offer,
        change=change,
        location=offer.spec.location.replace(" ", "").lower(),
        resource_url=str(
            request.url.with_path(request.path.split("/migrateTo")[0]).with_query(
                {"api-version": request.query.get("api-version", "")}
            )
        ),
        due=now + world.lro_duration,
        fail=world.faults.consume("lro-fail", now) is not None,
    )
    world.cosmos_ops[op.id] = op
    world.cosmos_in_flight.append(op)
    world.writes += 1
    api = request.query.get("api-version", "")
    url = (
        f"{request.scheme}://{request.host}/subscriptions/{offer.spec.subscription}"
        f"/providers/Microsoft.DocumentDB/locations/{op.location}/operationsStatus/{op.id}"
        f"?api-version={api}"
    )
    return web.Response(status=202, headers={"Location": url, "Azure-AsyncOperation": url})


async def put_offer(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """Accept a new offer: 202 + ``Azure-AsyncOperation``; it lands when it ends, polled
    or not (see ``World.land_due``)."""
    offer = _find(world, p)
    if offer is None:
        return _not_found(p)
    try:
        body = await read_json(request)
        wanted = offer.validate(body, world.now())
    except ValueError as exc:
        return _bad(str(exc))
    return _accept(world, request, offer, wanted)


async def migrate(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    offer = _find(world, p)
    if offer is None:
        return _not_found(p)
    if offer.pending(world.now()):
        return _bad("An offer replace is pending on this resource; retry when it ends.")
    to = "autoscale" if request.path.lower().endswith("migratetoautoscale") else "manual"
    return _accept(world, request, offer, to)


async def operation_status(
    world: World, request: web.Request, p: dict[str, str]
) -> web.StreamResponse:
    op = world.cosmos_ops.get(p["op"])
    if op is None:
        return error(404, "NotFound", f"Operation {p['op']} was not found.")
    op.polls += 1
    now = world.now()
    if op.status == "InProgress" and op.polls > world.lro_polls:
        world.end_cosmos(op, now)
    body: dict[str, object] = {"status": op.status, "startTime": format_datetime(now)}
    if op.status == "Succeeded":
        body["resourceLocation"] = op.resource_url  # where the SDK reads the result
    if op.error is not None:
        body["error"] = op.error
    return json_response(body)


COSMOS_ROUTES: list[Route] = [
    route("GET", _OFFER, get_offer, "arm"),
    route("PUT", _OFFER, put_offer, "arm"),
    route("POST", _OFFER + r"/migrateTo(?:Autoscale|ManualThroughput)", migrate, "arm"),
    route("GET", _STATUS, operation_status, "arm"),
]
