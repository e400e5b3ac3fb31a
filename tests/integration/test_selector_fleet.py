"""One selector policy over the 300-app `fleet` estate, discovered through Resource Graph.

Every app tagged ``remediator/policy: api`` becomes a target of its own; an app created
mid-run joins within one discovery interval and one round; a deleted one stops; a
discovery that fails or comes back empty keeps the last good set, and says so.
"""

from __future__ import annotations

import copy
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.audit.log import MemoryAudit
from controller.background import keep_discovering
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.policy.loader import LoadedPolicy
from controller.policy.schema import Policy
from controller.runtime import Runtime, open_runtime
from controller.status import MAX_SHOWN, gather
from controller.status_page import render
from tests.conftest import START, emulator_settings

pytestmark = pytest.mark.anyio
SCENARIO = load_scenario("fleet")
[SELECTOR_POLICY] = [Policy.model_validate(p) for p in SCENARIO.policies]
API = {r.name for r in SCENARIO.resources if r.tags.get("remediator/policy") == "api"}


def app_id(name: str) -> str:
    return next(r.resource_id for r in SCENARIO.resources if r.name == name).lower()


def targets(runtime: Runtime) -> set[str]:
    return {r.target.lower() for r in runtime.loop.reconcilers}


def passed(runtime: Runtime, name: str) -> bool:
    """The target for app ``name`` has completed a pass."""
    return any(
        r.target.lower() == app_id(name) and r.key in runtime.loop.health.last_tick
        for r in runtime.loop.reconcilers
    )


@pytest.fixture
async def fleet(clock: VirtualClock) -> AsyncIterator[tuple[Emulator, str]]:
    emu = Emulator(SCENARIO, now=clock.now)
    emu.clear_faults()
    async with emu.serve() as base_url:
        yield emu, base_url


async def run(
    settings: Any,
    policy: Policy,
    clock: VirtualClock,
    steps: list[tuple[float, Any]],
    sleepers: int,
) -> Runtime:
    """Run the controller with background discovery, calling each ``(minute, check)`` once
    the virtual clock reaches that minute; time moves once ``sleepers`` tasks (the targets
    and the discovery) are asleep, so no query is overtaken by the clock."""
    loaded = [LoadedPolicy(policy, "fleet.yaml", 1)]
    async with (
        open_runtime(
            settings, clock=clock, policies=loaded, audit=MemoryAudit(), rng=random.Random(5)
        ) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        tg.start_soon(keep_discovering, runtime)
        for minute, check in steps:
            await clock.drive(START + timedelta(minutes=minute), sleepers=sleepers)
            check(runtime)
        tg.cancel_scope.cancel()
    return runtime


async def test_a_tag_selector_covers_the_estate_as_it_changes(
    tmp_path: Path, clock: VirtualClock, fleet: tuple[Emulator, str]
) -> None:
    emu, base_url = fleet
    settings = emulator_settings(
        base_url, tmp_path, interval="1m", discoveryInterval="2m", mode="dry-run"
    )
    seen: dict[str, Any] = {}

    def at_start(runtime: Runtime) -> None:
        # every tagged app that exists now (app-299 comes at 20m), each a target of its own
        assert targets(runtime) == {app_id(n) for n in API - {"app-299"}}
        assert len({r.key for r in runtime.loop.reconcilers}) == len(API) - 1
        assert runtime.metrics.targets.labels("api-cpu")._value.get() == len(API) - 1
        assert all(
            r.policy.target.region in ("eastus", "westeurope") for r in runtime.loop.reconcilers
        )
        # the status page: a line for the policy with its count, the most troubled in full
        status = gather(runtime.loop, runtime.clock.now(), [], passes=runtime.passes.by_target)
        assert [(p.policy, p.targets) for p in status.policies] == [("api-cpu", len(API) - 1)]
        assert len(status.targets) == MAX_SHOWN and status.hidden == len(API) - 1 - MAX_SHOWN
        page = render(status)
        assert f"{status.hidden} more target(s)" in page and "<h2>Fleet</h2>" in page
        assert status.fleet is not None and status.fleet.targets == len(API) - 1
        assert page.count('<section class="target"') == MAX_SHOWN  # large estates: bounded

    def joined(runtime: Runtime) -> None:
        # created at 20m: found by the discovery at 22m, and through a pass a round later
        seen["299"] = passed(runtime, "app-299")

    def left(runtime: Runtime) -> None:
        seen["121"] = app_id("app-121") in targets(runtime)

    await run(
        settings,
        SELECTOR_POLICY,
        clock,
        [(0.5, at_start), (20 + 2 + 1 + 0.5, joined), (40 + 2 + 0.5, left)],
        sleepers=len(API) - 1 + 1,  # the targets at start and the discovery
    )
    assert seen == {"299": True, "121": False}
    reads = [
        r for r in emu.requests if r["path"].lower().endswith("microsoft.resourcegraph/resources")
    ]
    assert 20 <= len(reads) <= 24  # one query at start, then one every 2 minutes for 42.5


async def test_a_failed_or_empty_discovery_keeps_the_last_good_set(
    tmp_path: Path, clock: VirtualClock, fleet: tuple[Emulator, str]
) -> None:
    """Resource Graph failing, then answering nothing for a selector that found one app
    before (it was deleted, or the graph is wrong): neither is believed."""
    emu, base_url = fleet
    settings = emulator_settings(base_url, tmp_path, interval="1m", discoveryInterval="2m")
    data = copy.deepcopy(SCENARIO.policies[0])
    data["target"]["selector"]["name"] = "app-121"
    policy = Policy.model_validate(data)
    states: list[tuple[int, str | None, float]] = []

    def note(runtime: Runtime) -> None:
        stale = runtime.metrics.discovery_stale.labels("api-cpu")._value.get()
        states.append(
            (len(runtime.loop.reconcilers), runtime.readiness.discovery.get("api-cpu"), stale)
        )

    steps = [
        (1, note),
        (3, lambda r: emu.set_fault("graph-error", 4 * 60)),
        (5, note),
        (9, note),
        (45, note),
    ]
    await run(settings, policy, clock, steps, sleepers=2)
    assert states[0] == (1, None, 0)  # found, believed
    assert states[1][0] == 1 and "discovery failed" in (states[1][1] or "") and states[1][2] == 1
    assert states[2] == (1, None, 0)  # the graph answers again
    # app-121 deleted at 40m: an empty answer where there was one app is not believed
    assert states[3][0] == 1 and "found nothing" in (states[3][1] or "") and states[3][2] == 1


async def test_a_stale_last_good_set_observes_but_does_not_act(
    tmp_path: Path, clock: VirtualClock, fleet: tuple[Emulator, str]
) -> None:
    """Resource Graph failing from 1 minute on: past discoveryStaleAfter (4 minutes) the
    last good set still runs — app-042 observed, its CPU spike at 10m seen — but its
    actions wait (the pause guard, saying why), for the set may no longer be the estate."""
    emu, base_url = fleet
    settings = emulator_settings(
        base_url,
        tmp_path,
        interval="1m",
        discoveryInterval="2m",
        discoveryStaleAfter="4m",
        mode="live",
    )
    data = copy.deepcopy(SCENARIO.policies[0])
    data["target"]["selector"]["name"] = "app-042"
    policy = Policy.model_validate(data)
    runtime = await run(
        settings,
        policy,
        clock,
        [(1, lambda r: emu.set_fault("graph-error", 60 * 60)), (20, lambda r: None)],
        sleepers=2,
    )
    assert targets(runtime) == {app_id("app-042")}  # still running, observing
    writes = [r for r in emu.requests if r["method"] == "PATCH"]
    assert writes == []
    assert isinstance(runtime.audit, MemoryAudit)
    denied = [r for r in runtime.audit.records if r.get("decision") == "deny"]
    assert denied and all("paused: discovery stale" in r["reason"] for r in denied)
    assert "for 1" in denied[0]["reason"] and "(discoveryStaleAfter 4m)" in denied[0]["reason"]
