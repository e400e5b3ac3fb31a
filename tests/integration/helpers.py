"""Run the real controller against the emulator on a virtual clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from controller.audit.log import read_records
from controller.clock import VirtualClock
from controller.config import Settings
from controller.policy.loader import LoadedPolicy
from controller.policy.schema import Policy
from controller.runtime import open_runtime


async def run_controller(
    settings: Settings, policies: list[Policy], clock: VirtualClock, until: datetime
) -> list[dict[str, Any]]:
    """Run the loop until ``until`` in virtual time; return the audit records written."""
    loaded = [LoadedPolicy(p, "test", 1) for p in policies]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(7)) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        if runtime.escalator is not None:
            tg.start_soon(runtime.escalator.run)
        await clock.drive(until, sleepers=len(policies))
        if runtime.escalator is not None:  # let queued escalations go out (loopback: ms)
            with anyio.move_on_after(5):
                while not runtime.escalator.idle():  # noqa: ASYNC110 (a counter, no event)
                    await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    return audit_records(Path(settings.audit_path))


def audit_records(path: Path) -> list[dict[str, Any]]:
    return list(read_records(path)) if path.exists() else []


def actions(records: list[dict[str, Any]], outcome: str = "succeeded") -> list[dict[str, Any]]:
    return [r for r in records if r["outcome"] == outcome]


async def raw_patch(base_url: str, resource_id: str, body: dict[str, Any]) -> None:
    """Change the emulated app over plain HTTP (as someone else would), waiting for it."""
    url = f"{base_url}{resource_id}?api-version=2026-07-01"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as session:
        async with session.patch(url, json=body) as response:
            assert response.status == 202, await response.text()
            status_url = response.headers["Azure-AsyncOperation"]
        while True:
            async with session.get(status_url) as response:
                if (await response.json())["status"] == "Succeeded":
                    return


@asynccontextmanager
async def webhook(fail_first: int = 0) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A chat webhook on loopback: records what it is sent, failing the first few with 500."""
    received: list[dict[str, Any]] = []
    calls = [0]

    async def hook(request: web.Request) -> web.Response:
        calls[0] += 1
        if calls[0] <= fail_first:
            return web.Response(status=500)
        received.append(await request.json())
        return web.Response(text="1")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()
