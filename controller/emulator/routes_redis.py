"""Azure Cache for Redis routes: get and patch the cache, and ``forceReboot``.

A PATCH that changes the SKU answers 200 with ``provisioningState: "Scaling"`` and no
operation headers, as the service does; the SDK then polls the cache itself, and the
scale lands on the read after ``world.lro_polls`` of them (see ``RedisCache.read``).
"""

from __future__ import annotations

from aiohttp import web

from .redis import PatchRefused, RedisCache
from .routing import Route, route
from .wire import error, json_response, read_json
from .world import World

_CACHE = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Cache/Redis/(?P<name>[^/]+)"
)


def _find(world: World, p: dict[str, str]) -> RedisCache | None:
    rid = (
        f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}"
        f"/providers/Microsoft.Cache/Redis/{p['name']}"
    )
    return world.caches.get(rid.lower())


def _not_found(p: dict[str, str]) -> web.Response:
    return error(
        404, "ResourceNotFound", f"The Resource 'Microsoft.Cache/Redis/{p['name']}' was not found."
    )


def _refused(exc: PatchRefused) -> web.Response:
    return error(exc.status, exc.code, exc.message)


async def get_cache(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """The cache; while it scales, each read counts as one poll of the scale."""
    cache = _find(world, p)
    if cache is None:
        return _not_found(p)
    state = cache.read(world.now(), world.lro_polls)
    return json_response(cache.to_json(state))


async def patch_cache(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """Merge the fields sent into the cache; a new SKU starts ``Scaling``."""
    cache = _find(world, p)
    if cache is None:
        return _not_found(p)
    try:
        body = await read_json(request)
    except ValueError:
        return error(400, "InvalidRequestContent", "The request body is not valid JSON.")
    try:
        update = cache.validate(body)
    except PatchRefused as exc:
        return _refused(exc)
    now = world.now()
    fail = update.sku is not None and world.faults.consume("lro-fail", now) is not None
    cache.apply(now, update, fail, now + world.lro_duration)
    if cache.pending is not None:
        world.caches_scaling.append(cache)
    world.writes += 1
    return json_response(cache.to_json(cache.provisioning_state))


async def force_reboot(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    cache = _find(world, p)
    if cache is None:
        return _not_found(p)
    try:
        body = await read_json(request)
    except ValueError:
        return error(400, "InvalidRequestContent", "The request body is not valid JSON.")
    try:
        cache.reboot(world.now(), body)
    except PatchRefused as exc:
        return _refused(exc)
    world.writes += 1
    return json_response({"message": "reboot operation enqueued"})


REDIS_ROUTES: list[Route] = [
    route("GET", _CACHE, get_cache, "arm"),
    route("PATCH", _CACHE, patch_cache, "arm"),
    route("POST", _CACHE + r"/forceReboot", force_reboot, "arm"),
]
