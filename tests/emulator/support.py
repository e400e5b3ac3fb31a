"""Shared helpers for the emulator tests: a hand-driven clock, a served session, URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from controller.emulator import Emulator

START = datetime(2026, 1, 1, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-agentstudio-prod"
APPS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/containerApps"
API_APP = f"{APPS}/agentstudio-api"
WORKER = f"{APPS}/agentstudio-worker"
ACA = {"api-version": "2026-07-01"}
MON = {"api-version": "2024-02-01"}
AUTH = {"Authorization": "Bearer test-token"}


class ManualClock:
    """Scenario time that moves only when a test says so."""

    def __init__(self, start: datetime = START) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def set(self, minutes: float) -> None:
        self.t = START + timedelta(minutes=minutes)

    def advance(self, **delta: float) -> None:
        self.t += timedelta(**delta)


@asynccontextmanager
async def served(emu: Emulator, auth: bool = True) -> AsyncIterator[aiohttp.ClientSession]:
    """The emulator on a free port, and a session whose relative URLs go to it."""
    async with (
        emu.serve() as base,
        aiohttp.ClientSession(base_url=base, headers=AUTH if auth else None) as session,
    ):
        yield session


def minutes(m: float) -> str:
    return (START + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(a: float, b: float) -> str:
    return f"{minutes(a)}/{minutes(b)}"


def metric_params(names: str, a: float, b: float, **extra: str) -> dict[str, str]:
    return {
        "timespan": window(a, b),
        "interval": "PT1M",
        "metricnames": names,
        "aggregation": "Average",
        "metricnamespace": "Microsoft.App/containerApps",
        **MON,
        **extra,
    }


def shape(value: Any) -> Any:
    """The JSON's structure: keys and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def covers(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Where ``ours`` lacks a key of ``theirs`` or gives it another type."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{where}: expected an object"]
        return [
            p
            for k, v in theirs.items()
            for p in covers(ours.get(k, "<missing>"), v, f"{where}.{k}")
        ]
    if ours == "<missing>":
        return [f"{where}: missing"]
    return [] if ours == theirs else [f"{where}: {ours} instead of {theirs}"]
