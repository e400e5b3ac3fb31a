"""Least privilege and no secrets: what the controller calls, and what it never prints."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from controller.azure.clients import AzureClients
from controller.azure.credentials import EMULATOR_TOKEN, make_credential
from controller.cli import main
from controller.clock import VirtualClock
from controller.emulator import Emulator, list_scenarios, load_scenario
from controller.emulator.config_writer import policies_for
from controller.emulator.scenario import parse_scenario
from controller.model import OutcomeKind, Proposal, Quality
from controller.permissions import required_action, role_actions
from controller.plugins import default_registry
from controller.policy.schema import Objective, Policy, Target
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


TOUR = """\
name: tour
start: "2026-01-01T00:00:00Z"
duration: 10m
subscription: 00000000-0000-0000-0000-000000000001
resources:
  - type: cosmosThroughput
    name: workflows
    resourceGroup: rg-agentstudio-prod
    account: cosmos-agentstudio-prod
    database: agentstudio
    container: workflows
    location: eastus
    throughput: 1000
    workload: {ruDemand: 500}
  - type: redisCache
    name: redis-agentstudio-prod
    resourceGroup: rg-agentstudio-prod
    location: eastus
    sku: {name: Standard, family: C, capacity: 1}
    workload: {clients: 10}
  - type: containerApp
    resourceGroup: rg-agentstudio-prod
    name: agentstudio-api
    location: eastus
    containers: [{name: api, image: agentstudio/api:1, cpu: 0.5, memory: 1Gi}]
    workload: {cpuDemandCores: 0.1, baseMemoryMiB: 100}
"""


async def _tour(used: set[str]) -> None:
    """What no shipped scenario reaches: a container-level offer, a cache reboot (it needs
    an approval in the scenario), a resource-centric Application Insights query, and a
    scale whose operation Azure answers with a containerappOperationStatuses URL (as the
    service does besides the published example's containerappOperationResults)."""
    scenario = parse_scenario(TOUR)
    clock = VirtualClock(scenario.start + timedelta(minutes=5))
    emu = Emulator(scenario, now=clock.now, lro_path="containerappOperationStatuses")
    registry_ids = {o.name: o.resource_id for o in scenario.offers} | {
        c.name: c.resource_id for c in scenario.caches
    }
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, Path(tempfile.mkdtemp()))
        async with AzureClients(settings, make_credential("emulator")) as clients:
            registry = default_registry(clients, clock)
            container = Target(type="cosmosSqlContainer", resource_id=registry_ids["workflows"])
            cache = Target(type="redisCache", resource_id=registry_ids["redis-agentstudio-prod"])
            raised = {"throughput": 1200}
            await registry.apply("cosmosSqlContainer", "raiseThroughput")(
                container, Proposal("raiseThroughput", 0, raised, {}, raised, "tour")
            )
            reboot = {"rebootType": "AllNodes"}
            await registry.apply("redisCache", "rebootCache")(
                cache, Proposal("rebootCache", 0, reboot, {}, reboot, "tour")
            )
            insights = (
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/"
                "rg-agentstudio-prod/providers/microsoft.insights/components/agentstudio"
            )
            query = Objective.model_validate(
                {
                    "name": "errors",
                    "signal": {
                        "type": "logs",
                        "resourceId": insights,
                        "template": "requestErrorRate",
                        "role": "agentstudio-api",
                    },
                    "comparison": "<",
                    "threshold": 1,
                }
            )
            app = Target(type="containerApp", resource_id=scenario.resources[0].resource_id)
            seen = await registry.signal("logs").observe(app, [query], clock.now())
            assert seen["errors"].quality is not Quality.ERROR
            scaled = {"minReplicas": 2, "maxReplicas": 10}
            done = await registry.apply("containerApp", "scaleOut")(
                app, Proposal("scaleOut", 0, scaled, {}, scaled, "tour")
            )
            assert done.kind is OutcomeKind.SUCCEEDED
    used.update(a for r in emu.requests if (a := required_action(r["method"], r["path"])))


async def test_the_role_holds_exactly_the_operations_the_controller_calls(tmp_path: Path) -> None:
    """Every scenario run live, plus a tour of what none reaches: the operations called
    are exactly the role's actions — none missing, none granted but unused."""
    used: set[str] = set()
    for name in WITH_POLICIES:
        loaded = load_scenario(name)
        clock = VirtualClock(loaded.start)
        emu = Emulator(loaded, now=clock.now)
        async with emu.serve() as base_url:
            settings = emulator_settings(base_url, tmp_path / name, mode="live", listen="off")
            policies = [Policy.model_validate(p) for p in policies_for(loaded, base_url)]
            await run_controller(settings, policies, clock, loaded.start + loaded.duration)
        used.update(a for r in emu.requests if (a := required_action(r["method"], r["path"])))
    await _tour(used)
    assert used == set(role_actions())
