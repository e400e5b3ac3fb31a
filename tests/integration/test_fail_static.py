"""Fail static through the whole controller: a correlated spike moves nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.schema import Policy
from tests.conftest import APP_ID, START, emulator_settings, make_policy
from tests.integration.helpers import actions, run_controller, webhook
from tests.scenarios import fleet_scenario

pytestmark = pytest.mark.anyio


def fleet_policy(i: int) -> Policy:
    target = {
        "type": "containerApp",
        "resourceId": APP_ID.replace("agentstudio-api", f"app-{i}"),
        "region": "eastus",
    }
    return make_policy(metadata={"name": f"app-{i}"}, target=target)


@pytest.mark.parametrize(("spiking", "acting"), [(8, 0), (1, 1)])
async def test_a_correlated_spike_moves_nothing(
    tmp_path: Path, clock: VirtualClock, spiking: int, acting: int
) -> None:
    """All eight apps spiking at once: no action, one escalation. One app alone: it acts."""
    timeline = [f"{{at: 2m, resource: app-{i}, cpuDemandCores: 0.8}}" for i in range(spiking)]
    emu = Emulator(fleet_scenario(tmp_path, [0.2] * 8, timeline), now=clock.now, wobble=0)
    policies = [fleet_policy(i) for i in range(8)]
    async with emu.serve() as base_url, webhook(fail_first=1) as (hook, sent):
        settings = emulator_settings(base_url, tmp_path, mode="live", escalationWebhook=hook)
        records = await run_controller(settings, policies, clock, START + timedelta(minutes=12))
    assert len({r["policy"] for r in actions(records)}) == acting
    escalations = [r for r in records if r["kind"] == "escalation"]
    if spiking == 8:
        assert emu.writes == 0 and len(escalations) == 1
        assert "targets in breach at once" in escalations[0]["reason"]
        denied = [r for r in records if r["decision"] == "deny"]
        assert denied and all(r["guard"] == "fleet" for r in denied)
        # the webhook failed once; the retry delivered it, in the background
        [message] = sent
        assert message["kind"] == "fail-static" and message["text"].startswith("Remediator: ")
    else:
        assert emu.writes >= 1 and escalations == []
