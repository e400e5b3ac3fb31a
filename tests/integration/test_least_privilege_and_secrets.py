"""Least privilege and no secrets: what the controller calls, and what it never prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.azure.credentials import EMULATOR_TOKEN
from controller.cli import main
from controller.clock import VirtualClock
from controller.emulator import Emulator, list_scenarios, load_scenario
from controller.emulator.config_writer import policies_for
from controller.permissions import required_action, role_actions
from controller.policy.schema import Policy
from controller.telemetry import configure_logging
from tests.conftest import emulator_settings
from tests.integration.helpers import audit_records, run_controller

pytestmark = pytest.mark.anyio


WITH_POLICIES = [name for name in list_scenarios() if load_scenario(name).policies]


@pytest.mark.parametrize("scenario", WITH_POLICIES)
async def test_every_request_is_on_the_allow_list_and_no_secret_leaks(
    tmp_path: Path, scenario: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A live run through a whole scenario calls only allow-listed operations, and its token
    appears in no audit line, log line or metric."""
    configure_logging("info")  # every line, whatever an earlier command in this process set
    loaded = load_scenario(scenario)
    clock = VirtualClock(loaded.start)
    emu = Emulator(loaded, now=clock.now)
    async with emu.serve() as base_url:
        policies = [Policy.model_validate(p) for p in policies_for(loaded, base_url)]
        settings = emulator_settings(base_url, tmp_path, mode="live", listen="off")
        await run_controller(settings, policies, clock, loaded.start + loaded.duration)
    requests = [r for r in emu.requests if not r["path"].startswith("/_emulator")]
    assert requests and (emu.writes >= 1 or scenario == "steady")
    off_list = {
        (r["method"], r["path"])
        for r in requests
        if required_action(r["method"], r["path"]) is None
    }
    assert off_list == set()
    audit = json.dumps(audit_records(Path(settings.audit_path)))
    out, err = capfd.readouterr()
    if scenario != "steady":  # there was something to scan
        assert "intent" in audit and "result" in out + err
    for text in (audit, out, err):
        assert EMULATOR_TOKEN not in text and "Bearer " not in text


def test_permissions_command_prints_the_role_actions(capsys: pytest.CaptureFixture[str]) -> None:
    """`remediator permissions` gives exactly the actions of the allow-list."""
    assert main(["permissions"]) == 0
    actions = json.loads(capsys.readouterr().out)["actions"]
    assert actions == role_actions()
    assert "Microsoft.App/containerApps/write" in actions
    assert not any(a.endswith("/delete") or a == "*" for a in actions)


def test_unknown_operations_are_off_the_list() -> None:
    """A delete, or a write to anything but a Container App, needs a permission we never ask for."""
    app = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/api"
    assert required_action("DELETE", app) is None
    assert required_action("PUT", "/subscriptions/s/resourceGroups/rg") is None
    assert required_action("PATCH", app) == "Microsoft.App/containerApps/write"
