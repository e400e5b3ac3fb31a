"""`remediator record` writes as it goes: an interrupted recording keeps every pass up
to the last, each value once, and replays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.backtest.history import RecordingWriter, read_recording
from controller.backtest.sources import record
from controller.clock import VirtualClock
from controller.emulator import Emulator
from tests.conftest import START, emulator_settings, make_policy

pytestmark = pytest.mark.anyio


async def test_an_interrupted_recording_keeps_what_it_saw(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    _, base_url = emulator
    policy = make_policy()
    out = tmp_path / "incident.jsonl"
    settings = emulator_settings(base_url, tmp_path)
    async with AzureClients(settings, make_credential("emulator")) as clients:
        with RecordingWriter(out, clock.now()) as writer:
            async with anyio.create_task_group() as tg:
                minute, hour = timedelta(minutes=1), timedelta(hours=1)
                tg.start_soon(record, clients, clock, [policy], hour, minute, writer)
                await clock.drive(START + timedelta(minutes=10), sleepers=1)
                tg.cancel_scope.cancel()  # what Ctrl-C does to the command
            lines = out.read_text().splitlines()
    history = read_recording(out)
    series = history.series(policy.name, "cpu")
    assert series and series[-1][0] >= START + timedelta(minutes=8)
    assert policy.name in history.states
    stamps = [line for line in lines if '"ts"' in line]
    assert len(stamps) == len(set(stamps))  # each value written once (unless it changed)
    assert len(stamps) < 2 * len(series)  # not once per pass that saw it in its window


def test_a_recording_cut_off_mid_line_reads_up_to_the_cut(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    with RecordingWriter(whole, START) as writer:
        for minute in range(3):
            writer.value("p", "cpu", START + timedelta(minutes=minute), 50.0 + minute)
    text = whole.read_text()
    cut = tmp_path / "cut.jsonl"
    cut.write_text(text[: len(text) - 12])  # the last line loses its end, and its newline
    assert read_recording(cut).series("p", "cpu") == [
        (START, 50.0),
        (START + timedelta(minutes=1), 51.0),
    ]
