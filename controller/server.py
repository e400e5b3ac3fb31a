"""The controller's HTTP face: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for
the platform, ``/`` for people (why did it act?). Every route is read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.clock import Clock
from controller.lease import LeaderElector
from controller.loop import Loop
from controller.model import Mode
from controller.readiness import Readiness
from controller.reconcile import PassResult
from controller.status import gather, read_tail
from controller.status_page import CONTENT_SECURITY_POLICY, render
from controller.telemetry import Metrics

# on every answer: the page loads nothing but its own stylesheet, may not be framed
# (clickjacking), is not sniffed into another type, and leaks no Referer
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _secure(_: web.Request, response: web.StreamResponse) -> None:
    """Add :data:`SECURITY_HEADERS` to every response, errors (404, 405) included."""
    response.headers.update(SECURITY_HEADERS)


def health(
    loop: Loop, clock: Clock, elector: LeaderElector | None = None
) -> tuple[bool, dict[str, object]]:
    """Healthy while no target is more than one of its own intervals late for its pass."""
    now = clock.now()
    stalled = loop.health.stalled(now)
    return not stalled, {
        "status": "stalled" if stalled else "ok",
        "role": elector.status() if elector else "single",
        "stalled": stalled,
        "targets": {name: ts.isoformat() for name, ts in loop.health.last_tick.items()},
        "failing": {name: n for name, n in loop.health.failures.items() if n},
    }


def make_app(
    loop: Loop,
    clock: Clock,
    metrics: Metrics,
    elector: LeaderElector | None = None,
    readiness: Readiness | None = None,
    *,
    audit_path: Path | None = None,
    audit_paths: Callable[[], Sequence[Path]] | None = None,
    mode: Mode | None = None,
    paused: Callable[[], str | None] | None = None,
    passes: Mapping[str, PassResult] | None = None,
) -> web.Application:
    """The routes. For ``/``: ``audit_path`` is read for values, decisions and reasons
    (or each of ``audit_paths()``: with shards, the logs of the partitions held);
    ``paused`` says whether the controller-wide kill switch is on; ``passes`` holds the
    latest pass per policy (see :class:`~controller.status.LastPasses`)."""

    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok, detail = health(loop, clock, elector)
        return web.json_response(detail, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        if readiness is None:
            return web.json_response({"status": "ready", "checks": {}}, status=200)
        ok, detail = await readiness.check()
        return web.json_response(detail, status=200 if ok else 503)

    async def status_page(_: web.Request) -> web.Response:
        names = [r.policy.name for r in loop.reconcilers]
        records: list[dict[str, Any]] = []
        paths = list(audit_paths()) if audit_paths is not None else []
        if audit_path is not None:
            paths.append(audit_path)
        for path in paths:  # file reads off the event loop: the loop keeps running
            records += await anyio.to_thread.run_sync(partial(read_tail, path, names))
        if len(paths) > 1:  # newest first, whichever log holds it
            records.sort(key=lambda r: str(r.get("ts")), reverse=True)
        ready = await readiness.check() if readiness is not None else None
        status = gather(
            loop,
            clock.now(),
            records,
            mode=mode.value if mode is not None else None,
            role=elector.status() if elector else "single",
            paused=paused() if paused is not None else None,
            pause_known=paused is not None,
            readiness=ready,
            passes=passes,
        )
        return web.Response(text=render(status), content_type="text/html", charset="utf-8")

    app = web.Application()
    app.on_response_prepare.append(_secure)
    app.router.add_get("/", status_page)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` until the block exits; yields the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
