"""PromQL instant queries against a real Prometheus scraping an exporter the test sets."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from controller.clock import SystemClock, VirtualClock
from controller.core.evaluate import evaluate
from controller.model import Observation, Quality, VerdictState
from controller.policy.probe_signals import PrometheusSignal
from controller.policy.schema import Objective, Target
from controller.signals.history import bucket
from controller.signals.prometheus import HistoryError, PrometheusSource, range_history
from tests import prometheus
from tests.conftest import APP_ID
from tests.prometheus import POLL, Stack, free_port

pytestmark = pytest.mark.anyio
prometheus_stack = prometheus.prometheus_stack  # the session's Prometheus and exporter
TARGET = Target(type="containerApp", resource_id=APP_ID)
SCRAPE_WAIT = 20.0  # seconds, at most, for Prometheus to scrape a new value


def objective(query: str, name: str = "errors", **signal: Any) -> Objective:
    """``errors``: the query's value below 0.1, for 2m, at 1m grain."""
    return Objective.model_validate(
        {
            "name": name,
            "signal": {"type": "prometheus", "query": query, **signal},
            "comparison": "<",
            "threshold": 0.1,
            "for": "2m",
        }
    )


@pytest.fixture(scope="session")
def exported(prometheus_stack: Stack) -> Stack:
    """The exporter's starting values: one ratio, and one metric split into two series."""
    prometheus_stack.exporter.values.update(
        {
            "app_errors_ratio": 0.02,
            'app_requests_total{code="200"}': 10,
            'app_requests_total{code="500"}': 2,
        }
    )
    return prometheus_stack


async def scraped(stack: Stack, query: str, value: float) -> None:
    """Wait (real time, short polls) until Prometheus answers ``query`` with ``value``."""
    async with aiohttp.ClientSession() as session:
        with anyio.fail_after(SCRAPE_WAIT):
            while True:
                params = {"query": query, "time": f"{time.time():.3f}"}
                async with session.get(f"{stack.url}/api/v1/query", params=params) as response:
                    result = (await response.json())["data"]["result"]
                if result and float(result[0]["value"][1]) == value:
                    return
                await anyio.sleep(POLL)


async def read(source: PrometheusSource, goal: Objective) -> Observation:
    return (await source.observe(TARGET, [goal], SystemClock().now()))[goal.name]


async def test_reads_the_exported_value_and_follows_it(exported: Stack) -> None:
    """The one number equals what the exporter serves, before and after it changes."""
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    await scraped(exported, "app_errors_ratio", 0.02)
    first = await read(source, objective("app_errors_ratio"))
    assert first.quality is Quality.GOOD
    assert [s.value for s in first.samples] == [0.02]
    assert first.samples[0].ts == bucket(first.observed_at, timedelta(minutes=1))

    exported.exporter.values["app_errors_ratio"] = 0.05
    await scraped(exported, "app_errors_ratio", 0.05)
    second = await read(source, objective("app_errors_ratio"))
    assert second.quality is Quality.GOOD
    assert second.samples[-1].value == 0.05


async def test_a_scalar_is_one_number_and_nan_is_missing(exported: Stack) -> None:
    """``scalar()`` answers are read like a one-series vector; NaN is no usable value."""
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    await scraped(exported, 'app_requests_total{code="500"}', 2)
    scalar = await read(source, objective('scalar(app_requests_total{code="500"}) * 3'))
    assert scalar.quality is Quality.GOOD and scalar.samples[-1].value == 6
    nan = await read(source, objective("0 / 0", name="nan"))
    assert nan.quality is Quality.MISSING and not nan.samples
    assert nan.error is not None and "NaN" in nan.error


async def test_several_series_are_an_error_naming_the_count(exported: Stack) -> None:
    """The query must reduce to one number itself: two series name the count, and a fix."""
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    await scraped(exported, 'app_requests_total{code="200"}', 10)
    await scraped(exported, 'app_requests_total{code="500"}', 2)
    observed = await read(source, objective("app_requests_total"))
    assert observed.quality is Quality.ERROR
    assert observed.error is not None
    assert "2 series" in observed.error and "max()" in observed.error
    assert 'code="500"' in observed.error
    summed = await read(source, objective("sum(app_requests_total)", name="total"))
    assert summed.quality is Quality.GOOD and summed.samples[-1].value == 12


async def test_no_series_is_missing(exported: Stack) -> None:
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    observed = await read(source, objective("no_such_metric_anywhere"))
    assert observed.quality is Quality.MISSING
    assert observed.error == "the query matched no series"


async def test_bad_promql_is_an_error_with_prometheus_message(exported: Stack) -> None:
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    observed = await read(source, objective("sum(app_errors_ratio"))
    assert observed.quality is Quality.ERROR
    assert observed.error is not None
    assert "HTTP 400, bad_data" in observed.error and "parse error" in observed.error


async def test_a_server_that_is_down_is_an_error(exported: Stack) -> None:
    """Nothing listening: error, and the history read before it is not erased."""
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    await scraped(exported, 'app_requests_total{code="200"}', 10)
    good = await read(source, objective('app_requests_total{code="200"}'))
    assert good.quality is Quality.GOOD
    down = f"http://127.0.0.1:{free_port()}"
    observed = await read(source, objective('app_requests_total{code="200"}', server=down))
    assert observed.quality is Quality.ERROR
    assert observed.error is not None and "127.0.0.1" in observed.error
    assert [s.value for s in observed.samples] == [10]


async def test_no_server_anywhere_is_an_error() -> None:
    """Neither the signal nor the controller names a server: error, no request made."""
    observed = await read(PrometheusSource(SystemClock()), objective("up"))
    assert observed.quality is Quality.ERROR
    assert observed.error is not None and "no Prometheus server" in observed.error


async def test_queries_are_evaluated_at_the_clocks_now(
    prometheus_stack: Stack, clock: VirtualClock
) -> None:
    """PromQL's time() is the evaluation time: it must be the (virtual) now passed in."""
    source = PrometheusSource(clock, default_server=prometheus_stack.url)
    observed = (await source.observe(TARGET, [objective("time()")], clock.now()))["errors"]
    assert observed.quality is Quality.GOOD
    assert observed.samples[-1].value == clock.now().timestamp()


async def test_bucketed_history_sustains_a_breach_on_virtual_time(
    prometheus_stack: Stack, clock: VirtualClock
) -> None:
    """One instant value per pass, bucketed per minute: two violating minutes are a breach,
    an error in between leaves a gap that proves nothing, and a good value clears it."""
    source = PrometheusSource(clock, default_server=prometheus_stack.url)
    states, previous = [], None
    # vector(…) answers at any time, so Prometheus can be asked about virtual time
    for query in ["vector(0.01)", "vector(0.5)", "sum(", "vector(0.5)", "vector(0.5)", "vector(0)"]:
        goal = objective(query)
        observed = (await source.observe(TARGET, [goal], clock.now()))["errors"]
        verdict = evaluate(goal, observed, clock.now(), previous)
        states.append(verdict.state)
        if verdict.state is not VerdictState.UNKNOWN:
            previous = verdict.state
        await clock.advance(60)
    ok, pending, breach, unknown = (
        VerdictState.OK,
        VerdictState.PENDING,
        VerdictState.BREACH,
        VerdictState.UNKNOWN,
    )
    assert states == [ok, pending, unknown, pending, breach, ok]


# ---------------------------------------------------------------------------- history


async def test_history_is_a_range_query_at_the_grain_in_chunks(exported: Stack) -> None:
    """``vector(time())`` is worth its own evaluation time: every sample sits at a
    grain-aligned instant inside the range, once, however the range is chunked."""
    signal = objective("vector(time())", grain="10s").signal
    assert isinstance(signal, PrometheusSignal)
    end = bucket(SystemClock().now(), timedelta(seconds=10))
    start = end - timedelta(minutes=5)
    async with aiohttp.ClientSession() as session:
        whole = await range_history(session, exported.url, signal, start, end)
        chunked = await range_history(session, exported.url, signal, start, end, steps=7)
    assert [s.ts for s in whole] == [start + timedelta(seconds=10 * i) for i in range(30)]
    assert all(s.value == s.ts.timestamp() for s in whole)
    assert chunked == whole


async def test_history_of_an_exported_metric_and_its_errors(exported: Stack) -> None:
    """The backtest reads what Prometheus kept; several series or a bad query raise,
    naming the server."""
    await scraped(exported, "app_errors_ratio", exported.exporter.values["app_errors_ratio"])
    source = PrometheusSource(SystemClock(), default_server=exported.url)
    now = SystemClock().now()
    # ahead of the last scrape, so a Prometheus started seconds ago has points to give
    samples = await source.history(
        TARGET, objective("app_errors_ratio", grain="10s"), now, now + timedelta(seconds=30)
    )
    assert samples and samples[-1].value == exported.exporter.values["app_errors_ratio"]
    with pytest.raises(HistoryError, match=r"2 series.*max\(\)/sum\(\)"):
        await source.history(
            TARGET, objective("app_requests_total", grain="10s"), now, now + timedelta(seconds=30)
        )
    with pytest.raises(HistoryError, match=r"Prometheus error .*bad_data"):
        await source.history(
            TARGET, objective("sum(", grain="10s"), now, now + timedelta(seconds=30)
        )
    with pytest.raises(HistoryError, match=r"127\.0\.0\.1:\d+: ClientConnectorError"):
        dead = PrometheusSource(SystemClock(), default_server=f"http://127.0.0.1:{free_port()}")
        await dead.history(TARGET, objective("up", grain="10s"), now, now + timedelta(seconds=30))


async def test_a_series_that_changes_between_chunks_is_refused() -> None:
    """Each chunk alone has one series, but not the same one: the whole range would have
    two, so the history is refused rather than two series spliced into one. (A server
    that answers so on cue: a real Prometheus needs hours of data to show it.)"""
    signal = objective("topk(1, app_requests_total)", grain="10s").signal
    assert isinstance(signal, PrometheusSignal)
    start = bucket(SystemClock().now(), timedelta(seconds=10))

    async def answer(request: web.Request) -> web.Response:
        first = float(request.query["start"]) == start.timestamp()
        code = "200" if first else "500"
        values = [[float(request.query["start"]), "1"]]
        series = [{"metric": {"code": code}, "values": values}]
        data = {"resultType": "matrix", "result": series}
        return web.json_response({"status": "success", "data": data})

    app = web.Application()
    app.router.add_get("/api/v1/query_range", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}"
            end = start + timedelta(seconds=40)
            with pytest.raises(HistoryError, match=r'\{code="200"\} and then \{code="500"\}'):
                await range_history(session, url, signal, start, end, steps=2)
    finally:
        await runner.cleanup()
