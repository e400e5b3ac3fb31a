"""The :class:`Emulator`: a fake Azure served by aiohttp, driven by a scenario and a clock.

The caller owns the clock (``now``), so the same emulator serves a test that moves
time by hand and a demo that runs scenario time faster than wall time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from .graph import Quota
from .routes_arm import ARM_ROUTES
from .routes_control import control_routes
from .routes_cosmos import COSMOS_ROUTES
from .routes_graph import GRAPH_ROUTES
from .routes_identity import IDENTITY_PATH, identity_routes
from .routes_logs import LOGS_ROUTES
from .routes_metrics import METRICS_ROUTES
from .routes_redis import REDIS_ROUTES
from .routing import dispatcher
from .scenario import ResourceSpec, Scenario, resource_from_json
from .world import World


def _default_clock(scenario: Scenario) -> Callable[[], datetime]:
    """Scenario time starting now at the scenario's demo speed (for ad-hoc use)."""
    anchor = time.time()

    def now() -> datetime:
        return scenario.start + timedelta(seconds=(time.time() - anchor) * scenario.speed)

    return now


class Emulator:
    """A fake Azure for one scenario: Container Apps ARM, Monitor metrics, a control API."""

    def __init__(
        self,
        scenario: Scenario,
        now: Callable[[], datetime] | None = None,
        *,
        lro_polls: int = 1,
        lro_retry_after: int = 0,
        wobble: float = 0.005,
        graph_quota: int | None = 15,
        graph_quota_window: timedelta = timedelta(seconds=5),
        lro_path: str = "containerappOperationResults",
    ) -> None:
        """``graph_quota`` Resource Graph queries per user per ``graph_quota_window`` of
        scenario time (None: no quota)."""
        self.scenario = scenario
        self._world = World(
            scenario, now or _default_clock(scenario), lro_polls, lro_retry_after, wobble
        )
        self._world.graph_quota = Quota(graph_quota, graph_quota_window)
        self._world.lro_path = lro_path
        self._app: web.Application | None = None

    @property
    def app(self) -> web.Application:
        if self._app is None:
            self._app = self._build()
        return self._app

    @property
    def writes(self) -> int:
        """State-changing requests accepted so far (PATCH 202, restart 200)."""
        return self._world.writes

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every Azure request received: ``{"method", "path", "query", "body"}``."""
        return self._world.requests

    def now(self) -> datetime:
        return self._world.now()

    def state(self) -> dict[str, Any]:
        """Same JSON as ``GET /_emulator/state``."""
        return self._world.state()

    def set_fault(self, kind: str, duration_s: float | None = None, **params: Any) -> None:
        """Inject ``kind`` from now for ``duration_s`` scenario seconds (None: until cleared;
        for ``lro-fail``: the next operation only)."""
        self._world.set_fault(kind, duration_s, params)

    def set_tags(self, resource_id: str, tags: dict[str, str]) -> None:
        """Set the tags of an app or a resource group (as an operator would in the portal)."""
        parts = resource_id.strip("/").split("/")
        if len(parts) == 4:  # subscriptions/S/resourceGroups/RG
            self._world.group_tags[parts[3].lower()] = dict(tags)
            return
        self._world.resources[resource_id.lower()].tags = dict(tags)

    def add_app(self, spec: ResourceSpec | dict[str, Any]) -> str:
        """Create a Container App now, from a spec or the control API's JSON (containers
        and workload may be left out); returns its resource id. ScenarioError if invalid,
        ValueError if it exists."""
        if isinstance(spec, dict):
            spec = resource_from_json(spec, self.scenario.subscription)
        return self._world.add_app(spec).resource_id

    def delete_app(self, resource_id: str) -> None:
        """Delete a Container App now; KeyError if no app exists at ``resource_id``."""
        if self._world.delete_app(resource_id) is None:
            raise KeyError(resource_id)

    def clear_faults(self) -> None:
        self._world.faults.clear()

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0 = any free port) and yield the base URL."""
        self._world.closing = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0]
            yield f"http://{host}:{bound[1]}"
        finally:
            self._world.closing.set()  # release any injected metrics hang
            await runner.cleanup()

    def _build(self) -> web.Application:
        world = self._world

        @web.middleware
        async def record(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            world.land_due()  # whoever asks next sees what Azure has applied by now
            if not request.path.startswith(("/_emulator", IDENTITY_PATH)):
                raw = await request.read()
                body: Any = None
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw.decode("utf-8", "replace")
                world.requests.append(
                    {
                        "method": request.method,
                        "path": request.path,
                        "query": dict(request.query.items()),
                        "body": body,
                    }
                )
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.add_routes(control_routes(world))
        app.add_routes(identity_routes(world))
        dispatch = dispatcher(
            world,
            ARM_ROUTES + COSMOS_ROUTES + REDIS_ROUTES + METRICS_ROUTES + LOGS_ROUTES + GRAPH_ROUTES,
        )

        async def azure(request: web.Request) -> web.StreamResponse:
            return await dispatch(world, request, {})

        app.router.add_route("*", "/{tail:.*}", azure)
        return app
