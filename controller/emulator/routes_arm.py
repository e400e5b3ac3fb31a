"""Container Apps ARM routes: get/patch the app (with an async-operation LRO), revisions."""

from __future__ import annotations

from aiohttp import web

from .containerapp import AppResource, PatchError, app_json, replicas_json, revision_json
from .revisions import Revision
from .routing import Route, route
from .timeutil import format_datetime
from .wire import error, json_response, read_json
from .world import World

_APP = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.App/containerApps/(?P<app>[^/]+)"
)
_OP = (
    r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.App/locations/(?P<loc>[^/]+)"
    r"/(?P<kind>containerappOperationResults|containerappOperationStatuses)/(?P<op>[^/]+)"
)


def _reads() -> dict[str, str]:
    return {"x-ms-ratelimit-remaining-subscription-reads": "249"}


def _writes(world: World) -> dict[str, str]:
    """ARM's remaining-writes header; low while the ``arm-write-pressure`` fault is on."""
    pressure = world.faults.active("arm-write-pressure", world.now())
    left = int(pressure.params.get("remaining", 2)) if pressure is not None else 199
    return {"x-ms-ratelimit-remaining-subscription-writes": str(left)}


def _not_found(what: str) -> web.Response:
    return error(404, "ResourceNotFound", f"The Resource '{what}' was not found.")


def _app(world: World, p: dict[str, str]) -> AppResource | None:
    return world.find_app(p["sub"], p["rg"], p["app"])


async def get_app(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    res = _app(world, p)
    if res is None:
        return _not_found(f"Microsoft.App/containerApps/{p['app']}")
    return json_response(app_json(res, world.now()), headers={"ETag": res.etag, **_reads()})


async def patch_app(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """Accept a merge patch: 202 + Azure-AsyncOperation; the change lands when its operation
    ends (polled or not, see ``World.land_due``)."""
    res = _app(world, p)
    if res is None:
        return _not_found(f"Microsoft.App/containerApps/{p['app']}")
    try:
        body = await read_json(request)
    except ValueError:
        return error(400, "InvalidRequestContent", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return error(400, "InvalidRequestContent", "The request body must be a JSON object.")
    concurrent = world.faults.consume("concurrent-write", world.now())
    if concurrent is not None:
        world.operator_change(res, concurrent.params)
    wanted = request.headers.get("If-Match")
    if wanted is not None and wanted not in ("*", res.etag):
        return error(
            412,
            "PreconditionFailed",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    try:
        op = world.begin_patch(res, body)
    except PatchError as exc:
        return error(400, exc.code, exc.message)
    api = request.query.get("api-version", "")
    url = (
        f"{request.scheme}://{request.host}/subscriptions/{res.spec.subscription}"
        f"/providers/Microsoft.App/locations/{op.location}/{world.lro_path}/{op.id}"
        f"?api-version={api}"
    )
    return json_response(
        app_json(res, world.now()),
        status=202,
        headers={"Azure-AsyncOperation": url, **_writes(world)},
    )


async def operation_status(
    world: World, request: web.Request, p: dict[str, str]
) -> web.StreamResponse:
    op = world.operations.get(p["op"])
    if op is None:
        return _not_found(f"{p['kind']}/{p['op']}")
    world.poll(op)
    body: dict[str, object] = {
        "id": (
            f"/subscriptions/{op.resource.spec.subscription}/providers/Microsoft.App"
            f"/locations/{op.location}/{p['kind']}/{op.id}"
        ),
        "name": op.id,
        "status": op.status,
        "startTime": format_datetime(op.created),
    }
    if op.ended is not None:
        body["endTime"] = format_datetime(op.ended)
    if op.error is not None:
        body["error"] = op.error
    headers = _reads()
    if op.status == "InProgress" and world.lro_retry_after:
        headers["Retry-After"] = str(world.lro_retry_after)
    return json_response(body, headers=headers)


async def list_revisions(
    world: World, request: web.Request, p: dict[str, str]
) -> web.StreamResponse:
    res = _app(world, p)
    if res is None:
        return _not_found(f"Microsoft.App/containerApps/{p['app']}")
    now = world.now()
    value = [revision_json(res, revision, now) for revision in res.revisions.items]
    return json_response({"value": value, "nextLink": None}, headers=_reads())


def _revision(world: World, p: dict[str, str]) -> tuple[AppResource, Revision] | web.Response:
    res = _app(world, p)
    if res is None:
        return _not_found(f"Microsoft.App/containerApps/{p['app']}")
    revision = res.revisions.find(p["rev"])
    if revision is None:
        return _not_found(f"Microsoft.App/containerApps/{p['app']}/revisions/{p['rev']}")
    return res, revision


async def get_revision(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    found = _revision(world, p)
    if isinstance(found, web.Response):
        return found
    res, revision = found
    return json_response(revision_json(res, revision, world.now()), headers=_reads())


async def restart_revision(
    world: World, request: web.Request, p: dict[str, str]
) -> web.StreamResponse:
    """Restart an active revision's replicas now (what a serving one leaked is released)."""
    found = _revision(world, p)
    if isinstance(found, web.Response):
        return found
    res, revision = found
    if not revision.active(world.now()):
        return error(
            400,
            "RevisionNotActive",
            f"Revision '{p['rev']}' is not active and cannot be restarted.",
        )
    world.restart(res, revision)
    return web.Response(status=200, headers=_writes(world))


async def list_replicas(
    world: World, request: web.Request, p: dict[str, str]
) -> web.StreamResponse:
    found = _revision(world, p)
    if isinstance(found, web.Response):
        return found
    res, revision = found
    return json_response(replicas_json(res, revision, world.now()), headers=_reads())


_GROUP = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"


def _group_json(world: World, p: dict[str, str]) -> dict[str, object]:
    location = world.group_location(p["sub"], p["rg"]) or "eastus"
    return {
        "id": f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}",
        "name": p["rg"],
        "type": "Microsoft.Resources/resourceGroups",
        "location": location,
        "tags": world.group_tags.get(p["rg"].lower(), {}),
        "properties": {"provisioningState": "Succeeded"},
    }


def _group_known(world: World, p: dict[str, str]) -> bool:
    return world.group_location(p["sub"], p["rg"]) is not None


async def get_group(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """A resource group, for the tags on it (``remediator-pause``)."""
    if not _group_known(world, p):
        return error(
            404, "ResourceGroupNotFound", f"Resource group '{p['rg']}' could not be found."
        )
    return json_response(_group_json(world, p), headers=_reads())


async def patch_group(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """Replace a resource group's tags, as ``az group update --tags`` does."""
    if not _group_known(world, p):
        return error(
            404, "ResourceGroupNotFound", f"Resource group '{p['rg']}' could not be found."
        )
    body = await read_json(request)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, dict):
        return error(400, "InvalidRequestContent", "The request must carry a 'tags' object.")
    world.group_tags[p["rg"].lower()] = {str(k): str(v) for k, v in tags.items()}
    world.writes += 1
    return json_response(_group_json(world, p), headers=_writes(world))


ARM_ROUTES: list[Route] = [
    route("GET", _GROUP, get_group, "arm"),
    route("PATCH", _GROUP, patch_group, "arm"),
    route("GET", _APP, get_app, "arm"),
    route("PATCH", _APP, patch_app, "arm"),
    route("GET", _APP + r"/revisions", list_revisions, "arm"),
    route("GET", _APP + r"/revisions/(?P<rev>[^/]+)", get_revision, "arm"),
    route("POST", _APP + r"/revisions/(?P<rev>[^/]+)/restart", restart_revision, "arm"),
    route("GET", _APP + r"/revisions/(?P<rev>[^/]+)/replicas", list_replicas, "arm"),
    route("GET", _OP, operation_status, "arm"),
]
