"""The HTTP surface is read-only and shows no secret: pause, resume and approvals stay on
the command line, and no endpoint echoes a webhook or a connection string."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import aiohttp
import anyio
import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from controller.server import serving
from tests.conftest import START, emulator_settings, make_policy

pytestmark = pytest.mark.anyio
PATHS = ("/", "/metrics", "/healthz", "/readyz")
SECRET = "s3cr3t-webhook-path-Zq9"


async def test_no_route_changes_state_or_shows_a_secret(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    settings = emulator_settings(
        emulator[1],
        tmp_path,
        mode="live",
        escalationWebhook=f"https://hooks.example.com/services/{SECRET}",
    )
    loaded = [LoadedPolicy(make_policy(guards={"breaker": {"failures": 1}}), "test", 1)]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(6)) as runtime,
        serving(runtime.app(), "127.0.0.1", 0) as base,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=10), sleepers=1)
        audit = anyio.Path(settings.audit_path)
        audit_before = await audit.read_bytes()
        async with aiohttp.ClientSession() as session:
            for path in PATHS:
                async with session.get(base + path) as response:
                    body = await response.text()
                assert response.status in (200, 503), path
                assert SECRET not in body and "hooks.example.com" not in body, path
                for method in ("POST", "PUT", "PATCH", "DELETE"):
                    async with session.request(method, base + path) as response:
                        assert response.status == 405, (method, path)
            for path in ("/pause", "/resume", "/approve", "/reject"):
                async with session.post(base + path) as response:
                    assert response.status in (404, 405), path
        assert await audit.read_bytes() == audit_before  # nothing was recorded
        assert not await anyio.Path(settings.pause_path).exists()
        tg.cancel_scope.cancel()
