"""Log Analytics / Application Insights: a KQL query per objective, one number per grain.

Templates (and well-formed custom queries) return rows of (time, number): each row is a
bucket, so a single query over the lookback fills the whole sustained window. A custom
query may instead return one row with one number; that value is bucketed at the pass's
grain like a Prometheus reading. A partial result (``LogsQueryPartialResult``) is an
error — part of the data is not the data — and so is anything else but a clean table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.model import Observation, Quality, Sample
from controller.policy.schema import LogsSignal, Objective, Target
from controller.signals import log_templates
from controller.signals.history import History, Reading, bucket


class LogsSource:
    """The ``logs`` signal source."""

    def __init__(self, clients: AzureClients, clock: Clock) -> None:
        self._clients = clients
        self._clock = clock
        self._history = History()

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing to batch: each objective is its own query."""

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing kept per target."""

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        for objective in objectives:
            out[objective.name] = await self._observe(target, objective, now)
        return out

    async def _observe(self, target: Target, objective: Objective, now: datetime) -> Observation:
        signal = objective.signal
        if not isinstance(signal, LogsSignal):
            raise TypeError(f"objective {objective.name} is not a logs query")
        label = signal.template or "kql"
        query = signal.query or log_templates.render(
            signal.template or "requestErrorRate", signal.role, signal.grain
        )
        lookback = signal.lookback or objective.for_ + signal.grain * 3
        try:
            rows = await self._query(signal, query, (now - lookback, now))
        except (AzureError, OSError, ValueError) as exc:
            return Observation(
                target.resource_id, label, (), Quality.ERROR, now, retry.describe(exc)
            )
        if isinstance(rows, str):
            return Observation(target.resource_id, label, (), Quality.ERROR, now, rows)
        series = _as_series(rows, signal.grain)
        if series is not None:
            quality = Quality.GOOD if series else Quality.MISSING
            reason = None if series else "the query returned no rows"
            return Observation(target.resource_id, label, tuple(series), quality, now, reason)
        single = _as_number(rows)
        reading = (
            Reading(single)
            if single is not None
            else Reading.error("the query must return one number, or rows of (time, number)")
        )
        return self._history.observe(objective, target.resource_id, label, reading, now, now)

    async def history(
        self, target: Target, objective: Objective, start: datetime, end: datetime
    ) -> list[Sample]:
        """The objective's binned series over [start, end), for backtests (a query that
        gives one number has no history: record it instead)."""
        signal = objective.signal
        if not isinstance(signal, LogsSignal):
            raise TypeError(f"objective {objective.name} is not a logs query")
        query = signal.query or log_templates.render(
            signal.template or "requestErrorRate", signal.role, signal.grain
        )
        rows = await self._query(signal, query, (start, end))
        if isinstance(rows, str):
            raise ValueError(rows)
        return _as_series(rows, signal.grain) or []

    async def _query(
        self, signal: LogsSignal, query: str, span: tuple[datetime, datetime]
    ) -> list[list[Any]] | str:
        """The first table's rows, or why there are none to trust."""
        client = await self._clients.logs()
        from azure.monitor.query import LogsQueryStatus  # loaded with the client

        async def run() -> Any:
            if signal.workspace_id is not None:
                return await client.query_workspace(signal.workspace_id, query, timespan=span)
            return await client.query_resource(signal.resource_id or "", query, timespan=span)

        result = await retry.call(self._clock, run)
        if result.status is LogsQueryStatus.PARTIAL:
            error = result.partial_error
            return f"partial result: {getattr(error, 'code', '')} {getattr(error, 'message', '')}"
        if result.status is not LogsQueryStatus.SUCCESS or not result.tables:
            return "the query returned no table"
        return [list(row) for row in result.tables[0].rows]


def _as_series(rows: list[list[Any]], grain: timedelta) -> list[Sample] | None:
    """Rows of (time, number) as bucketed samples; None if the rows are not that shape."""
    if not rows:
        return []
    if any(len(row) != 2 or not isinstance(row[0], datetime) for row in rows):
        return None
    samples = []
    for stamp, value in rows:
        number = _number(value)
        samples.append(Sample(bucket(stamp, grain), number))
    return samples


def _as_number(rows: list[list[Any]]) -> float | None:
    if len(rows) == 1 and len(rows[0]) == 1:
        return _number(rows[0][0])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
