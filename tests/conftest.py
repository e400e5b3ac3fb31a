"""Shared fixtures: anyio on asyncio, policies built from plain dicts, a fresh emulator."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.clock import VirtualClock
from controller.config import Settings, load_settings
from controller.emulator import Emulator, load_scenario
from controller.policy.schema import Policy

START = datetime(2026, 1, 1, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-000000000001"
APP_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-agentstudio-prod/providers/"
    "Microsoft.App/containerApps/agentstudio-api"
)

BASE_POLICY: dict[str, Any] = {
    "apiVersion": "remediator/v1",
    "kind": "Policy",
    "metadata": {"name": "api-cpu"},
    "target": {"type": "containerApp", "resourceId": APP_ID, "region": "eastus"},
    "objectives": [
        {
            "name": "cpu",
            "signal": {"metric": "CpuPercentage", "aggregation": "Average", "grain": "1m"},
            "comparison": "<",
            "threshold": 70,
            "clear": 60,
            "for": "3m",
        }
    ],
    "remediation": [{"scaleOut": {"step": 1, "maxReplicas": 4}}, {"scaleUp": {"maxCpu": 2.0}}],
    "guards": {"cooldown": "5m", "maxActionsPerHour": 4, "bounds": {"maxReplicas": 6}},
}


def make_policy(**changes: Any) -> Policy:
    """The base policy with top-level keys replaced (and ``objective=`` merged into the first)."""
    data = copy.deepcopy(BASE_POLICY)
    objective = changes.pop("objective", None)
    if objective:
        data["objectives"][0].update(objective)
    data.update(changes)
    return Policy.model_validate(data)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
async def emulator(clock: VirtualClock) -> AsyncIterator[tuple[Emulator, str]]:
    """The cpu-spike scenario's world on a free loopback port, on the test's clock."""
    emu = Emulator(load_scenario("cpu-spike"), now=clock.now)
    async with emu.serve(host="127.0.0.1", port=0) as base_url:
        yield emu, base_url


def emulator_settings(base_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values = {
        "credential": "emulator",
        "cloud": "custom",
        "armEndpoint": base_url,
        "metricsEndpoint": base_url,
        "logsEndpoint": base_url,
        "auditPath": str(tmp_path / "audit.jsonl"),
        "listen": "off",
        "requestTimeout": "2s",
        **overrides,
    }
    return load_settings(None, environ={}, overrides=values)
