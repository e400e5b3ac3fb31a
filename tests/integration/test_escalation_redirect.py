"""The escalation webhook follows no redirect: a 3xx could carry the payload, and the
URL's secret, anywhere. It is a failed delivery, retried and then dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from aiohttp import web

from controller.escalation import Escalator
from controller.server import serving

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def recorder(status: int = 200, location: str = "") -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback server answering every POST with ``status``; records each body."""
    bodies: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.text())
        headers = {"Location": location} if location else {}
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app, "127.0.0.1", 0) as base:
        yield base + "/hook", bodies


async def test_a_redirect_is_not_followed() -> None:
    async with (
        recorder() as (elsewhere, taken),
        recorder(307, location=elsewhere) as (hook, asked),
    ):
        escalator = Escalator(hook, attempts=2, wait_max=0.001)
        async with anyio.create_task_group() as tg:
            tg.start_soon(escalator.run)
            escalator.escalate({"text": "api-cpu needs a person"})
            with anyio.fail_after(10):
                while not escalator.idle():  # noqa: ASYNC110 (delivery runs on its own task)
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
    assert len(asked) == 2  # retried like any failed delivery
    assert taken == []  # the second server got nothing
    assert (escalator.delivered, escalator.dropped) == (0, 1)
