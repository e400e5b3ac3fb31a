"""Prometheus: a PromQL instant query per objective, read once per pass.

Each pass asks ``GET {server}/api/v1/query?query=…&time=<now>`` and turns the answer
into one number: a scalar, or an instant vector of exactly one series. No series is
``missing``; several series, a range vector, an error answer, a non-200 status, a
timeout or no connection is ``error`` — the query must reduce to one number itself
(``max()``, ``sum()``), because which series matters is the policy's call, not ours.
NaN and ±Inf are ``missing``. Values are bucketed per objective at the signal's grain
(see :mod:`controller.signals.history`) so the sustained-window rules apply unchanged.

No retries: a failed read is a gap in one bucket, and the next pass reads again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from controller.clock import Clock
from controller.model import Observation, Sample
from controller.policy.probe_signals import PrometheusSignal
from controller.policy.schema import Objective, Target
from controller.signals.history import History, Reading, bucket, read_each

MAX_BODY = 4 * 1024 * 1024  # a one-number answer is tiny: bounds what a runaway query costs
RANGE_STEPS = 10_000  # points a range query asks for (Prometheus refuses over 11,000)
MAX_RANGE_BODY = 16 * 1024 * 1024  # 10,000 points of one series are well under 1 MiB
SHOWN_SERIES = 3  # label sets quoted when a query returns several series

SessionFactory = Callable[[], aiohttp.ClientSession]


class PrometheusSource:
    """The ``prometheus`` signal source."""

    def __init__(
        self,
        clock: Clock,
        default_server: str | None = None,
        *,
        session_factory: SessionFactory = aiohttp.ClientSession,
    ) -> None:
        self._clock = clock
        self._default_server = default_server
        self._session_factory = session_factory  # e.g. to add an Authorization header
        self._history = History()

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing to prepare: every objective is its own query, read when observed."""

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing kept per target."""

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        """One observation per objective; the queries run concurrently."""
        # a session per pass: nothing to close at shutdown, and passes are minutes apart
        async with self._session_factory() as session:

            async def read(objective: Objective) -> Reading:
                signal: object = objective.signal
                if not isinstance(signal, PrometheusSignal):
                    return Reading.error(f"not a prometheus signal: {type(signal).__name__}")
                return await self._read(session, signal, now)

            readings = await read_each(objectives, read)
        return self._history.observe_all(
            objectives, target.resource_id, readings, now, self._clock.now()
        )

    async def history(
        self, target: Target, objective: Objective, start: datetime, end: datetime
    ) -> list[Sample]:
        """The objective's series over [start, end), for backtests."""
        signal = objective.signal
        if not isinstance(signal, PrometheusSignal):
            raise HistoryError(f"not a prometheus signal: {type(signal).__name__}")
        server = signal.server or self._default_server
        if server is None:
            raise HistoryError(
                "no Prometheus server: set the signal's server or the controller's default"
            )
        async with self._session_factory() as session:
            return await range_history(session, server, signal, start, end)

    async def _read(
        self, session: aiohttp.ClientSession, signal: PrometheusSignal, now: datetime
    ) -> Reading:
        server = signal.server or self._default_server
        if server is None:
            return Reading.error(
                "no Prometheus server: set the signal's server or the controller's default"
            )
        seconds = signal.timeout.total_seconds()
        params = {
            "query": signal.query,
            "time": f"{now.timestamp():.3f}",
            "timeout": f"{seconds:g}",  # Prometheus stops evaluating when we stop waiting
        }
        try:
            async with session.get(
                server.rstrip("/") + "/api/v1/query",
                params=params,
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_BODY:
                        return Reading.error(
                            f"answer larger than {MAX_BODY // 1024 // 1024} MiB from "
                            f"{_where(server)}: the query must reduce to one number"
                        )
                status = response.status
        except TimeoutError:
            return Reading.error(f"no answer from {_where(server)} within {seconds:g}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Reading.error(f"{_where(server)}: {type(exc).__name__}: {exc}"[:300])
        return interpret(status, bytes(body))


class HistoryError(RuntimeError):
    """A range query that gave no usable series; the message names the server."""


async def range_history(
    session: aiohttp.ClientSession,
    server: str,
    signal: PrometheusSignal,
    start: datetime,
    end: datetime,
    steps: int = RANGE_STEPS,
) -> list[Sample]:
    """The query's values from the grain's bucket holding ``start`` to ``end``, evaluated
    at each bucket's start by ``/api/v1/query_range``, ``steps`` at a time (Prometheus
    answers at most 11,000 points a series). Each value lands in the bucket starting at
    its instant (a live read lands in the bucket it was made in, up to a grain later, so
    a rate replays up to a grain early). The query must give the same one series over
    the whole range, however it is chunked."""
    grain = signal.grain
    samples: list[Sample] = []
    labels: dict[str, str] | None = None  # the one series' labels, once seen
    chunk = bucket(start, grain)
    while chunk < end:
        until = min(end, chunk + grain * steps)
        params = {
            "query": signal.query,
            "start": f"{chunk.timestamp():.3f}",
            "end": f"{until.timestamp():.3f}",
            "step": f"{grain.total_seconds():g}",
        }
        try:
            async with session.get(
                server.rstrip("/") + "/api/v1/query_range",
                params=params,
                timeout=aiohttp.ClientTimeout(total=max(signal.timeout.total_seconds(), 30.0)),
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await response.content.read(MAX_RANGE_BODY + 1)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise HistoryError(f"{_where(server)}: {type(exc).__name__}: {exc}"[:300]) from None
        if len(body) > MAX_RANGE_BODY:
            raise HistoryError(
                f"{_where(server)}: a range answer larger than "
                f"{MAX_RANGE_BODY // 1024 // 1024} MiB: the query must give one series"
            )
        found, points = _matrix(status, body, server)
        if found is not None and labels is not None and found != labels:
            raise HistoryError(
                f"{_where(server)}: the query gave {_labels(labels)} and then {_labels(found)} "
                "over the range; it must reduce to one series, e.g. with max()/sum()"
            )
        labels = found if found is not None else labels
        samples += [Sample(ts, value) for ts, value in points if chunk <= ts < until]
        chunk = until
    return samples


def _matrix(
    status: int, body: bytes, server: str
) -> tuple[dict[str, str] | None, list[tuple[datetime, float | None]]]:
    """The one series of a ``/api/v1/query_range`` answer: its labels (None: no series)
    and its points."""
    try:
        answer = json.loads(body)
        if answer.get("status") != "success" or status != 200:
            raise HistoryError(
                f"{_where(server)}: Prometheus error (HTTP {status}, "
                f"{answer.get('errorType')}): {answer.get('error')}"
            )
        result = answer["data"]["result"]
        if len(result) > 1:
            raise HistoryError(
                f"{_where(server)}: the query returned {len(result)} series; "
                "it must reduce to one number, e.g. with max()/sum()"
            )
        if not result:
            return None, []
        points = [
            (datetime.fromtimestamp(float(at), UTC), _number(text).value)
            for at, text in result[0]["values"]
        ]
        return dict(result[0].get("metric") or {}), points
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        text = body[:200].decode("utf-8", "replace")
        raise HistoryError(
            f"{_where(server)}: HTTP {status}, not a range answer ({exc}): {text!r}"
        ) from None


def interpret(status: int, body: bytes) -> Reading:
    """One number out of a ``/api/v1/query`` answer, or why there is none."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        text = body[:200].decode("utf-8", "replace")
        return Reading.error(f"HTTP {status}, not a Prometheus API answer: {text!r}")
    if answer.get("status") != "success" or status != 200:
        kind = answer.get("errorType") or "unknown"
        return Reading.error(f"Prometheus error (HTTP {status}, {kind}): {answer.get('error')}")
    try:
        data = answer["data"]
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return _number(result[1])
        if kind != "vector":
            return Reading.error(
                f"the query returned a {kind}; it must return one number "
                "(an instant vector of one series, or a scalar)"
            )
        if not result:
            return Reading.missing("the query matched no series")
        if len(result) > 1:
            shown = ", ".join(_labels(s.get("metric", {})) for s in result[:SHOWN_SERIES])
            more = ", …" if len(result) > SHOWN_SERIES else ""
            return Reading.error(
                f"the query returned {len(result)} series ({shown}{more}); "
                "the query must reduce to one number, e.g. with max()/sum()"
            )
        return _number(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        return Reading.error(f"malformed Prometheus answer: {type(exc).__name__}: {exc}")


def _number(text: Any) -> Reading:
    """Prometheus sends sample values as strings; NaN and ±Inf are no usable number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return Reading.error(f"malformed Prometheus value: {text!r}")
    if not math.isfinite(value):
        return Reading.missing(f"the query's value is {text}")
    return Reading(value)


def _labels(metric: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))
    return "{" + inner + "}"


def _where(server: str) -> str:
    """The server without any user:password it may carry, for messages."""
    parts = urlsplit(server)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
