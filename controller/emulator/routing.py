"""One catch-all aiohttp handler that dispatches Azure paths by regex.

Azure paths are case-insensitive and the SDK may send a doubled slash (a resource
URI that already starts with ``/``), which aiohttp's own router would not match.
The dispatcher also applies what every Azure route shares: bearer auth,
``api-version`` and the injected faults of the route's family.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .wire import check_api_version, check_auth, error
from .world import World

Handler = Callable[[World, web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    family: str  # "arm" (Microsoft.App) or "metrics"


def route(method: str, pattern: str, handler: Handler, family: str) -> Route:
    return Route(method, re.compile(pattern, re.IGNORECASE), handler, family)


def normalise(path: str) -> str:
    return re.sub(r"/{2,}", "/", path).rstrip("/") or "/"


def _forbidden(action: str, scope: str) -> web.Response:
    """ARM's answer to a caller whose role does not grant ``action`` over ``scope``."""
    client = "00000000-0000-0000-0000-00000000c0de"  # the emulator's one identity
    return error(
        403,
        "AuthorizationFailed",
        f"The client '{client}' with object id '{client}' does not have authorization to "
        f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access "
        "was recently granted, please refresh your credentials.",
    )


async def _fault_gate(
    world: World, family: str, method: str = "GET", path: str = "/"
) -> web.Response | None:
    """The injected-failure answer for this route family, if a fault is active."""
    now = world.now()
    if family == "arm" and world.faults.active("arm-forbidden", now):
        verb = "read" if method == "GET" else "write"
        return _forbidden(f"Microsoft.App/containerApps/{verb}", path)
    if family == "metrics" and world.faults.active("metrics-forbidden", now):
        scope = re.split(r"/providers/microsoft\.insights/", path, flags=re.IGNORECASE)[0]
        return _forbidden("Microsoft.Insights/metrics/read", scope)
    if (
        family == "arm"
        and method in ("PATCH", "PUT", "POST")
        and world.faults.active("arm-busy", now)
    ):
        return error(
            409,
            "RetryableErrorDueToAnotherOperation",
            "Another operation is in progress on the resource (injected); retry later.",
        )
    if family == "arm":
        if world.faults.active("arm-throttle", now):
            return error(
                429,
                "TooManyRequests",
                "Number of 'read' requests for subscription exceeded the limit (injected).",
                {"Retry-After": "1", "x-ms-ratelimit-remaining-subscription-reads": "0"},
            )
        if world.faults.active("arm-error", now):
            return error(
                500, "InternalServerError", "Encountered internal server error (injected)."
            )
    elif family == "metrics":
        hang = world.faults.active("metrics-hang", now)
        if hang is not None:
            seconds = float(hang.params.get("hang_seconds", 30.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(world.closing.wait(), timeout=seconds)
            return error(504, "GatewayTimeout", "The metrics query timed out (injected).")
        if world.faults.active("metrics-error", now):
            return error(500, "InternalServerError", "Metrics backend error (injected).")
    return None


async def _slow_answer(world: World, family: str, method: str) -> None:
    """``arm-slow``: the request has taken effect; its answer is held back, so a client
    can be stopped between sending a write and hearing that it was accepted (with
    ``writes_only``, reads answer at once: a decision is not made stale waiting)."""
    slow = world.faults.active("arm-slow", world.now()) if family == "arm" else None
    if slow is not None and slow.params.get("writes_only") and method == "GET":
        return
    if slow is not None:
        seconds = float(slow.params.get("delay_seconds", 1.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(world.closing.wait(), timeout=seconds)


def dispatcher(world: World, routes: list[Route]) -> Handler:
    """Build the handler for every Azure path."""

    async def dispatch(w: World, request: web.Request, _: dict[str, str]) -> web.StreamResponse:
        path = normalise(request.path)
        allowed = False
        for r in routes:
            match = r.pattern.fullmatch(path)
            if match is None:
                continue
            if r.method != request.method:
                allowed = True
                continue
            # the Log Analytics data plane versions its path (/v1), not its query
            denied = check_auth(request) or (
                None if r.family == "logs" else check_api_version(request)
            )
            if denied is not None:
                return denied
            faulted = await _fault_gate(w, r.family, request.method, path)
            if faulted is not None:
                return faulted
            response = await r.handler(w, request, match.groupdict())
            await _slow_answer(w, r.family, request.method)
            return response
        if allowed:
            return error(405, "MethodNotAllowed", f"{request.method} is not supported on {path}.")
        return error(404, "NotFound", f"No emulated Azure API at {path}.")

    return dispatch
