"""``/_emulator/*``: the back door tests and demos use to look inside and inject faults.

These routes need no token: they are not Azure, and nothing in the controller calls them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .scenario import ScenarioError, resource_from_json
from .timeutil import parse_duration
from .wire import error, json_response, read_json
from .world import World


def control_routes(world: World) -> list[web.RouteDef]:
    async def state(request: web.Request) -> web.StreamResponse:
        return json_response(world.state())

    async def requests(request: web.Request) -> web.StreamResponse:
        return json_response(world.requests)

    async def add_fault(request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json(request)
        except ValueError:
            return error(400, "BadRequest", "The request body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
            return error(400, "BadRequest", 'Send {"kind": "...", "for": "3m" | null, ...}.')
        params: dict[str, Any] = {k: v for k, v in body.items() if k not in {"kind", "for"}}
        try:
            duration = body.get("for")
            seconds = parse_duration(str(duration)).total_seconds() if duration else None
            fault = world.set_fault(body["kind"], seconds, params)
        except ValueError as exc:
            return error(400, "BadRequest", str(exc))
        return json_response(fault.to_json(world.now()))

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        world.faults.clear()
        return json_response({"faults": []})

    async def health(request: web.Request) -> web.StreamResponse:
        """The app's own health endpoint (/health, /health/ready, /health/live): 503 while
        the app is hung, which only a restart clears."""
        name = request.match_info["app"]
        res = world.find_by_name(name)
        if res is None:
            return web.json_response({"status": "NotFound"}, status=404)
        if res.model.hung(world.now()):
            return web.json_response(
                {"status": "Unhealthy", "reason": "not responding"}, status=503
            )
        return web.json_response({"status": "Healthy"})

    async def add_resource(request: web.Request) -> web.StreamResponse:
        """Create a Container App now: the scenario's resource keys, as JSON."""
        try:
            body = await read_json(request)
        except ValueError:
            return error(400, "BadRequest", "The request body is not valid JSON.")
        try:
            spec = resource_from_json(body, world.scenario.subscription)
        except ScenarioError as exc:
            return error(400, "BadRequest", str(exc))
        try:
            res = world.add_app(spec)
        except ValueError as exc:
            return error(409, "Conflict", str(exc))
        return json_response({"id": res.resource_id}, status=201)

    async def delete_resource(request: web.Request) -> web.StreamResponse:
        """Delete a Container App now (its id, with or without the leading slash)."""
        resource_id = "/" + request.match_info["id"].lstrip("/")
        if world.delete_app(resource_id) is None:
            return error(404, "ResourceNotFound", f"No app exists at {resource_id}.")
        return web.Response(status=204)

    return [
        web.post("/_emulator/resources", add_resource),
        web.delete("/_emulator/resources/{id:.+}", delete_resource),
        web.get("/_emulator/apps/{app}/health", health),
        web.get("/_emulator/apps/{app}/health/{probe:ready|live}", health),
        web.get("/_emulator/state", state),
        web.get("/_emulator/requests", requests),
        web.post("/_emulator/faults", add_fault),
        web.delete("/_emulator/faults", clear_faults),
    ]
