"""One code path: a dry-run controller against the emulator, and a backtest of the same
history, make the same decisions at the same times."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.backtest.engine import replay
from controller.backtest.sources import fetch
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.model import Mode
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller

pytestmark = pytest.mark.anyio


async def test_backtest_decides_what_the_dry_run_decided(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    emu, base_url = emulator
    emu.clear_faults()  # an outage the live run saw as unknown would be data in hindsight
    policy = make_policy()
    end = START + timedelta(minutes=24)
    settings = emulator_settings(base_url, tmp_path, mode="dry-run", jitter=0)
    live = await run_controller(settings, [policy], clock, end)
    async with AzureClients(settings, make_credential("emulator")) as clients:
        history = await fetch(clients, clock, [policy], START, end)
    result = await replay(
        [policy],
        history,
        START,
        end,
        effects=False,
        mode=Mode.DRY_RUN,
        interval=settings.interval,
    )

    def decisions(records: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [
            (str(r["ts"])[:19], r["action"], r["decision"], r["guard"])
            for r in records
            if r["kind"] == "decision"
        ]

    replayed = [
        (m.ts.isoformat()[:19], m.action, "allow" if m.kind == "would-run" else "deny", m.guard)
        for m in result.targets[0].markers
        if m.kind in ("would-run", "denied")
    ]
    assert decisions(live) and decisions(live) == replayed
