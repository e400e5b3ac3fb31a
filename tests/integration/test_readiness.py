"""``/readyz``: a replica that cannot get a token, or cannot write its audit, says so."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import aiohttp
import anyio
import pytest

from controller.audit.log import AuditLog
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.emulator.routes_identity import IDENTITY_HEADER, IDENTITY_PATH
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
from controller.server import make_app, serving
from tests.conftest import START, emulator_settings, make_policy

pytestmark = pytest.mark.anyio


async def readyz(base: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as response:
        return response.status, await response.json()


async def test_a_credential_that_gives_no_token_is_not_ready_and_acts_on_nothing(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK's ManagedIdentityCredential against the emulator's identity endpoint: while
    no identity is assigned, every pass fails before reaching Azure, nothing is written,
    and /readyz answers 503 naming the credential; once the identity is back, it is
    ready again and the spike is handled."""
    emu, base_url = emulator
    monkeypatch.setenv("IDENTITY_ENDPOINT", base_url + IDENTITY_PATH)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    emu.set_fault("identity-unavailable")
    settings = emulator_settings(base_url, tmp_path, mode="live", credential="managedIdentity")
    loaded = [LoadedPolicy(make_policy(), "test", 1)]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(3)) as runtime,
        serving(
            make_app(runtime.loop, clock, runtime.metrics, readiness=runtime.readiness),
            "127.0.0.1",
            0,
        ) as base,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=12), sleepers=1)
        status, detail = await readyz(base)
        assert status == 503
        checks = detail["checks"]
        assert isinstance(checks, dict)
        assert checks["credential"]["ok"] is False
        assert "No managed identity" in checks["credential"]["problem"]
        assert checks["audit"]["ok"] and checks["policies"]["ok"]
        assert emu.writes == 0

        emu.clear_faults()
        await clock.drive(clock.now() + timedelta(minutes=20), sleepers=1)
        status, detail = await readyz(base)
        assert status == 200, detail
        assert emu.writes >= 1
        tg.cancel_scope.cancel()


async def test_an_audit_that_cannot_be_written_is_not_ready(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """A closed audit log makes the replica not ready; the detail names the file."""
    settings = emulator_settings(emulator[1], tmp_path)
    loaded = [LoadedPolicy(make_policy(), "test", 1)]
    async with open_runtime(settings, clock=clock, policies=loaded) as runtime:
        ready, _ = await runtime.readiness.check()
        assert ready
        assert isinstance(runtime.audit, AuditLog)
        runtime.audit.close()
        ready, detail = await runtime.readiness.check()
        assert not ready
        assert "audit.jsonl" in detail["checks"]["audit"]["problem"]
        assert detail["checks"]["role"] == {"ok": True, "role": "single"}


async def test_open_breakers_show_in_the_readiness_detail(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Every write fails, so the scaleOut breaker opens: /readyz lists it (the replica
    itself stays ready — a breaker is the guard working, not the replica failing)."""
    emu, base_url = emulator
    emu.set_fault("lro-fail", duration_s=3 * 3600)
    settings = emulator_settings(base_url, tmp_path, mode="live")
    policy = make_policy(guards={"cooldown": "1m", "breaker": {"failures": 1}})
    loaded = [LoadedPolicy(policy, "test", 1)]
    async with (
        open_runtime(settings, clock=clock, policies=loaded, rng=random.Random(5)) as runtime,
        serving(
            make_app(runtime.loop, clock, runtime.metrics, readiness=runtime.readiness),
            "127.0.0.1",
            0,
        ) as base,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        _, before = await readyz(base)
        assert before["openBreakers"] == []
        await clock.drive(START + timedelta(minutes=15), sleepers=1)
        status, detail = await readyz(base)
        tg.cancel_scope.cancel()
    assert status == 200
    assert detail["openBreakers"] == [
        {"policy": policy.name, "action": "scaleOut", "state": "open"}
    ]
