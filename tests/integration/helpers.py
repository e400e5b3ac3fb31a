"""Run the real controller against the emulator on a virtual clock."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio

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
        await clock.drive(until, sleepers=len(policies))
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
