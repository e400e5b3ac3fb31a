"""HTTP probes against a loopback server whose answers the test sets, on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web

from controller.clock import VirtualClock
from controller.core.evaluate import evaluate
from controller.model import Observation, Quality, VerdictState
from controller.policy.schema import Objective, Target
from controller.signals.http_probe import HttpProbeSource
from tests.conftest import APP_ID
from tests.prometheus import free_port

pytestmark = pytest.mark.anyio
TARGET = Target(type="containerApp", resource_id=APP_ID)
MINUTE = 60


def objective(url: str, **signal: Any) -> Objective:
    """``health``: fewer than 3 failed probes in a row, for 2m, at 1m grain."""
    return Objective.model_validate(
        {
            "name": "health",
            "signal": {"type": "httpProbe", "url": url, **signal},
            "comparison": "<",
            "threshold": 3,
            "for": "2m",
        }
    )


@dataclass
class Backend:
    """What ``/healthz`` answers: ``ok``, ``503``, ``slow`` (50 ms, then 200) or ``hang``."""

    url: str
    mode: str = "ok"
    hits: int = 0
    release: anyio.Event = field(default_factory=anyio.Event)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend(url="")

    async def healthz(request: web.Request) -> web.Response:
        state.hits += 1
        if state.mode == "hang":
            await state.release.wait()
        if state.mode == "slow":
            await anyio.sleep(0.05)
        if state.mode == "503":
            return web.Response(status=503, text="unavailable")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        state.url = f"http://{host}:{port}/healthz"
        yield state
    finally:
        state.release.set()  # let a hung handler finish before the server goes
        await runner.cleanup()


async def probe_each_minute(
    source: HttpProbeSource, clock: VirtualClock, backend: Backend, goal: Objective, modes: str
) -> list[Observation]:
    """One pass per minute, the backend answering per ``modes`` (space-separated)."""
    seen = []
    for mode in modes.split():
        backend.mode = mode
        seen.append((await source.observe(TARGET, [goal], clock.now()))["health"])
        await clock.advance(MINUTE)
    return seen


def newest(observation: Observation) -> float | None:
    return observation.samples[-1].value if observation.samples else None


async def test_consecutive_failures_count_and_reset(backend: Backend, clock: VirtualClock) -> None:
    """503s and a timeout count up, one per probe; a success resets the count to 0."""
    source = HttpProbeSource(clock)
    goal = objective(backend.url, timeout="150ms")
    seen = await probe_each_minute(source, clock, backend, goal, "ok 503 503 hang ok 503")
    assert [newest(o) for o in seen] == [0, 1, 2, 3, 0, 1]
    assert all(o.quality is Quality.GOOD for o in seen)  # a failed probe is data
    assert backend.hits == 6
    # one sample per minute bucket, kept as history
    assert [s.value for s in seen[-1].samples] == [0, 1, 2, 3, 0, 1]
    assert seen[-1].samples[1].ts - seen[-1].samples[0].ts == goal.signal.grain


async def test_unexpected_status_and_no_connection_are_failures(
    backend: Backend, clock: VirtualClock
) -> None:
    """A 200 where only 204 is expected fails; so does a port nobody listens on."""
    source = HttpProbeSource(clock)
    picky = objective(backend.url, expectStatus=[204])
    nobody = objective(f"http://127.0.0.1:{free_port()}/healthz").model_copy(
        update={"name": "nobody"}
    )
    for _ in range(2):
        seen = await source.observe(TARGET, [picky, nobody], clock.now())
        await clock.advance(MINUTE)
    assert newest(seen["health"]) == 2
    assert newest(seen["nobody"]) == 2
    assert {o.quality for o in seen.values()} == {Quality.GOOD}


async def test_latency_of_a_successful_probe(backend: Backend, clock: VirtualClock) -> None:
    """Latency is real elapsed time; a failed probe has none (error), and the history stays."""
    source = HttpProbeSource(clock)
    goal = objective(backend.url, measure="latencySeconds")
    slow, failed, fast = await probe_each_minute(source, clock, backend, goal, "slow 503 ok")
    assert slow.quality is Quality.GOOD
    assert 0.05 <= (newest(slow) or 0) < 5
    assert failed.quality is Quality.ERROR
    assert failed.error is not None and "HTTP 503" in failed.error
    assert [s.value for s in failed.samples] == [newest(slow)]  # the error erased nothing
    assert fast.quality is Quality.GOOD
    first = slow.samples[0].ts
    assert [s.ts for s in fast.samples] == [first, first + 2 * goal.signal.grain]  # a gap
    assert (newest(fast) or 1) < (newest(slow) or 0)


async def test_failure_ratio_is_per_bucket(backend: Backend, clock: VirtualClock) -> None:
    """Probes within one bucket share a ratio (newest wins); the next bucket starts afresh."""
    source = HttpProbeSource(clock)
    goal = objective(backend.url, measure="failureRatio")
    values = []
    for mode in ("ok", "503", "503"):
        backend.mode = mode
        values.append(newest((await source.observe(TARGET, [goal], clock.now()))["health"]))
        await clock.advance(10)
    assert values == [0, 0.5, pytest.approx(2 / 3)]
    await clock.advance(MINUTE)
    backend.mode = "ok"
    observed = (await source.observe(TARGET, [goal], clock.now()))["health"]
    assert [s.value for s in observed.samples] == [pytest.approx(2 / 3), 0]


async def test_sustained_failures_breach_and_recovery_clears(
    backend: Backend, clock: VirtualClock
) -> None:
    """consecutiveFailures < 3 for 2m: the 3rd failure is pending, the 4th a breach; a success clears it."""
    source = HttpProbeSource(clock)
    goal = objective(backend.url)
    states: list[VerdictState] = []
    previous: VerdictState | None = None
    for mode in ["503", "503", "503", "503", "503", "ok", "ok"]:
        backend.mode = mode
        observed = (await source.observe(TARGET, [goal], clock.now()))["health"]
        verdict = evaluate(goal, observed, clock.now(), previous)
        states.append(verdict.state)
        if verdict.state is not VerdictState.UNKNOWN:
            previous = verdict.state
        await clock.advance(MINUTE)
    ok, pending, breach = VerdictState.OK, VerdictState.PENDING, VerdictState.BREACH
    assert states == [ok, ok, pending, breach, breach, ok, ok]
