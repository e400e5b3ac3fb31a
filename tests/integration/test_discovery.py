"""Selector discovery against the emulator's Resource Graph, through the SDK over HTTP:
every page read and paced by the quota headers, an answer that does not add up or that
Resource Graph truncated is not believed, a changed selector starts afresh, and two
refreshes never interleave."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import AsyncExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import capture_logs

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import VirtualClock
from controller.discovery import Discovered, Discovery
from controller.emulator import Emulator
from controller.emulator.scenario import parse_scenario
from controller.policy.loader import LoadedPolicy
from tests.conftest import START, SUB, emulator_settings, make_policy

pytestmark = pytest.mark.anyio
GRAPH = "microsoft.resourcegraph/resources"


def estate(count: int) -> str:
    return f"""\
name: estate
start: "2026-01-01T00:00:00Z"
duration: 1h
subscription: "{SUB}"
resources:
  - type: containerApp
    count: {count}
    name: "app-{{i:04d}}"
    resourceGroup: rg
    location: eastus
    containers: [{{name: c, image: i:1, cpu: 0.5, memory: 1Gi}}]
    workload: {{cpuDemandCores: 0.1, baseMemoryMiB: 100}}
    tags: {{remediator/policy: api}}
"""


def selector_policy(**selector: Any) -> LoadedPolicy:
    target = {
        "type": "containerApp",
        "selector": {"subscriptions": [SUB], "tags": {"remediator/policy": "api"}, **selector},
    }
    return LoadedPolicy(make_policy(target=target), "estate.yaml", 1)


Make = Callable[..., Awaitable[tuple[Emulator, Discovery]]]


@pytest.fixture
async def graph(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Make]:
    """An estate of ``count`` apps served, and a Discovery over it (``page`` rows a page)."""
    async with AsyncExitStack() as stack:

        async def make(count: int, page: int = 1000, **kwargs: Any) -> tuple[Emulator, Discovery]:
            emu = Emulator(parse_scenario(estate(count)), now=clock.now, wobble=0.0, **kwargs)
            emu.clear_faults()
            base_url = await stack.enter_async_context(emu.serve())
            settings = emulator_settings(base_url, tmp_path)
            clients = AzureClients(settings, make_credential("emulator"))
            await stack.enter_async_context(clients)
            return emu, Discovery(clients, clock, page=page)

        yield make


@contextmanager
def debug_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every log line, debug included, whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


def graph_bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r["body"] for r in emu.requests if r["path"].lower().endswith(GRAPH)]


async def driven(
    clock: VirtualClock, work: Callable[[], Awaitable[dict[str, Discovered]]]
) -> dict[str, Discovered]:
    """Run ``work`` with the virtual clock moving whenever it sleeps (pacing, retries)."""
    out: dict[str, dict[str, Discovered]] = {}

    async def run() -> None:
        out["answer"] = await work()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await clock.drive(START + timedelta(hours=1), sleepers=1, stop_when=lambda: bool(out))
    return out["answer"]


async def test_every_page_is_read_a_thousand_rows_at_a_time_paced_by_the_quota(
    graph: Make, clock: VirtualClock
) -> None:
    """2,500 apps: three pages of $top=1000 (the controller always says it: without it a
    page is 100 rows). The quota (2 queries per 5 s) is spent after the second page: the
    third waits for the reset the headers announced, so Resource Graph never says 429."""
    emu, discovery = await graph(2500, graph_quota=2, graph_quota_window=timedelta(seconds=5))
    policy = selector_policy(maxTargets=5000)
    answers = await driven(clock, lambda: discovery.refresh_all([policy]))
    known = answers["api-cpu"]
    assert known.problem is None and len(known.believed) == 2500
    assert len({f.resource_id for f in known.believed}) == 2500
    bodies = graph_bodies(emu)
    assert len(bodies) == 3  # no page refused: none asked again
    assert all(b["options"]["$top"] == 1000 for b in bodies)
    assert [bool(b["options"].get("$skipToken")) for b in bodies] == [False, True, True]
    assert clock.now() - START == timedelta(seconds=5)  # x-ms-user-quota-resets-after
    assert discovery.quota.remaining == 1  # the new window's first query counted


async def test_a_throttled_page_waits_for_the_quota_reset_it_was_told(
    graph: Make, clock: VirtualClock
) -> None:
    """A 429 carries no Retry-After in Resource Graph: the wait comes from
    x-ms-user-quota-resets-after (the window's 5 s), on the controller's clock."""
    emu, discovery = await graph(30, page=10)
    emu.set_fault("graph-throttle", duration_s=3)
    answers = await driven(clock, lambda: discovery.refresh_all([selector_policy()]))
    assert answers["api-cpu"].problem is None and len(answers["api-cpu"].believed) == 30
    assert len(graph_bodies(emu)) == 1 + 3  # the throttled ask, then three pages
    assert clock.now() - START == timedelta(seconds=5)


async def test_pages_that_do_not_add_up_are_not_believed(graph: Make, clock: VirtualClock) -> None:
    """Resources created (a row read twice) or deleted (a row never read) between pages:
    the last good set stays, and says why; a row read twice is counted once (debug)."""
    emu, discovery = await graph(250, page=100)
    policy = selector_policy()
    first = await driven(clock, lambda: discovery.refresh_all([policy]))
    assert first["api-cpu"].problem is None and len(first["api-cpu"].believed) == 250
    for shift, read in ((1, 250), (-1, 248)):
        emu.set_fault("graph-drift", duration_s=60, shift=shift)
        with debug_logs() as logs:
            known = (await driven(clock, lambda: discovery.refresh_all([policy])))["api-cpu"]
        assert len(known.believed) == 250, shift  # the last good set still runs
        assert f"{read} distinct resources read" in (known.problem or "")
        totals = ", ".join(str(t) for t in sorted({250, 250 + shift}))
        assert f"totalRecords {totals}" in (known.problem or "")
        assert "keeping the last good set (250, believed" in (known.problem or "")
        twice = [e for e in logs if e["event"] == "row read twice"]
        assert len(twice) == (2 if shift > 0 else 0)
        assert all(e["log_level"] == "debug" for e in twice)
        await clock.advance(60)  # the fault over
    again = await driven(clock, lambda: discovery.refresh_all([policy]))
    assert again["api-cpu"].problem is None  # the fault over, the answer adds up again


async def test_a_truncated_answer_is_not_believed(graph: Make, clock: VirtualClock) -> None:
    emu, discovery = await graph(250, page=100)
    policy = selector_policy()
    await driven(clock, lambda: discovery.refresh_all([policy]))
    emu.set_fault("graph-truncated", duration_s=60)
    known = (await driven(clock, lambda: discovery.refresh_all([policy])))["api-cpu"]
    assert len(known.believed) == 250 and "resultTruncated" in (known.problem or "")
    assert len(graph_bodies(emu)) == 3 + 1  # no token to follow


async def test_a_changed_selector_lets_the_last_good_set_go(
    graph: Make, clock: VirtualClock
) -> None:
    """The last good set answers one selector: narrowed to match nothing, its first answer
    (empty) is believed; a maxTargets lowered below what is found keeps nothing."""
    _, discovery = await graph(30, page=100)
    wide = selector_policy()
    found = await driven(clock, lambda: discovery.refresh_all([wide]))
    assert len(found["api-cpu"].believed) == 30
    same = await driven(clock, lambda: discovery.refresh_all([selector_policy()]))
    assert same["api-cpu"] is found["api-cpu"]  # an unchanged selector: the same record

    nothing = selector_policy(name="web-*")
    known = (await driven(clock, lambda: discovery.refresh_all([nothing])))["api-cpu"]
    assert known.problem is None and known.believed == ()
    assert discovery.found() == {"api-cpu": ()}

    await driven(clock, lambda: discovery.refresh_all([wide]))
    assert len(discovery.found()["api-cpu"]) == 30
    capped = selector_policy(maxTargets=10)
    known = (await driven(clock, lambda: discovery.refresh_all([capped])))["api-cpu"]
    assert "more than maxTargets (10)" in (known.problem or "")
    assert "no last good set" in (known.problem or "")
    assert discovery.found() == {"api-cpu": ()}  # not the 30 a wider selector found


async def test_refreshes_never_interleave(graph: Make, clock: VirtualClock) -> None:
    """A refresh for the old selector (waiting for the quota) and one for the new (a
    reload) at once: the new one asks only once the old has read its last page, so the
    newest answer is the one kept; and what the old one leaves is no answer for the new
    selector (the targets the old refresh's caller applies next)."""
    emu, discovery = await graph(30, page=10)
    old, new = selector_policy(), selector_policy(name="app-000*")
    discovery.quota.remaining = 0  # spent: the old refresh waits 5 s before asking
    discovery.quota.resets_after = timedelta(seconds=5)
    left: dict[str, Any] = {}
    newer_done = anyio.Event()

    async def older() -> None:
        await discovery.refresh_all([old])
        left.update(discovery.found())  # at once, as Runtime.discover applies targets

    async def newer() -> None:
        await discovery.refresh_all([new])
        newer_done.set()

    async def until(condition: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not condition():  # noqa: ASYNC110 (sleepers and lock waiters: no event)
                await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(older)
        await until(lambda: clock.pending == 1)
        discovery.quota.remaining = None  # the reload finds the quota reset
        tg.start_soon(newer)
        await until(lambda: newer_done.is_set() or discovery._lock.statistics().tasks_waiting == 1)
        await clock.advance(5)
    # the refresh begun first asks all its pages first; the other begins after its last
    narrowed = ["matches regex" in b["query"] for b in graph_bodies(emu)]
    assert narrowed == [False] * 3 + [True], narrowed
    assert left == {}  # not the old selector's 30
    assert {f.name for f in discovery.found()["api-cpu"]} == {f"app-000{i}" for i in range(1, 10)}


async def test_a_policy_that_no_longer_selects_keeps_no_set(
    graph: Make, clock: VirtualClock
) -> None:
    """A selector policy changed to name one resource, then back: its old set is gone, so
    a failed first answer leaves it with no targets rather than with that set."""
    emu, discovery = await graph(30, page=100)
    selecting = selector_policy()
    await driven(clock, lambda: discovery.refresh_all([selecting]))
    assert len(discovery.found()["api-cpu"]) == 30
    await driven(clock, lambda: discovery.refresh_all([LoadedPolicy(make_policy(), "x.yaml", 1)]))
    assert discovery.found() == {}
    emu.set_fault("graph-error", duration_s=600)
    known = (await driven(clock, lambda: discovery.refresh_all([selecting])))["api-cpu"]
    assert "no last good set" in (known.problem or "") and discovery.found() == {"api-cpu": ()}
