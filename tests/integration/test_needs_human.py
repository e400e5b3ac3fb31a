"""Breaches nothing here can fix are marked for a person: once per breach, in the audit,
the metrics and the webhook — and nothing is written to Azure."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller, webhook

pytestmark = pytest.mark.anyio


async def test_a_watched_objective_in_breach_is_escalated_once(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """A watch-only policy (no ladder, like Azure OpenAI quota): the CPU spike is a breach
    for the rest of the run, escalated exactly once, and no write is made."""
    emu, base_url = emulator
    async with webhook() as (hook, sent):
        settings = emulator_settings(base_url, tmp_path, mode="live", escalationWebhook=hook)
        records = await run_controller(
            settings, [make_policy(remediation=[])], clock, START + timedelta(minutes=20)
        )
    escalations = [r for r in records if r["kind"] == "escalation"]
    assert len(escalations) == 1
    assert escalations[0]["reason"].startswith("needs a human: cpu in breach; watch only")
    assert [m["kind"] for m in sent] == ["needs-human"]
    assert emu.writes == 0


async def test_an_exhausted_ladder_is_escalated_once(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """One rung that cannot fix the spike (scaleOut to 2 leaves CPU at 80 %): when it is
    used up, the breach goes to a person."""
    emu, base_url = emulator
    policy = make_policy(
        remediation=[{"scaleOut": {"step": 1, "maxReplicas": 2}}],
        guards={"cooldown": "2m"},
    )
    settings = emulator_settings(base_url, tmp_path, mode="live")
    records = await run_controller(settings, [policy], clock, START + timedelta(minutes=30))
    escalations = [r for r in records if r["kind"] == "escalation"]
    assert len(escalations) == 1 and "ladder exhausted" in escalations[0]["reason"]
    assert emu.writes == 1
