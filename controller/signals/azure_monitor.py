"""Azure Monitor platform metrics, read in batches.

The batch API (``MetricsClient.query_resources``) takes up to 50 resources of one
subscription, region and namespace per call. Targets reconcile on their own
(jittered) schedules, so rather than hold a request back to gather others, the first
target of a group to ask in a grain's bucket fetches the whole group — every registered
target that shares its subscription, region, namespace and query — and the answer
serves the group until the bucket ends: one read per group and grain, ⌈N/50⌉ calls,
however the passes are spread (the data has no finer resolution than its grain). A
failed read is shared only for ``share_for``, so a blip is retried within the bucket.
A target with no declared region cannot be batched and is read alone through
``MonitorManagementClient.metrics.list``.

Anything short of a clean answer becomes an :class:`Observation` whose quality says
why — the evaluator then calls the objective unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import anyio
from azure.core.exceptions import AzureError

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.azure.metrics_batch import parse_stamp, query_batch
from controller.clock import Clock
from controller.model import Observation, Quality, Sample
from controller.policy.schema import MetricSignal, Objective, Target
from controller.signals.history import bucket

MAX_BATCH = 50
CONCURRENT_BATCHES = 4  # batch calls of one group in flight at once
_METRICS_PATH = "/providers/microsoft.insights/metrics/"
_READ_ERRORS = (AzureError, OSError, ValueError, KeyError, TypeError, AttributeError)
HISTORY_CHUNK = timedelta(days=1)
MAX_SERIES = 100  # series per metric when a filter splits by dimension (Azure's default is 10)
_AGG_FIELD = {
    "Average": "average",
    "Maximum": "maximum",
    "Minimum": "minimum",
    "Total": "total",
    "Count": "count",
}


@dataclass(frozen=True)
class QueryShape:
    """What must match for two targets to share one batch call."""

    subscription: str
    region: str
    namespace: str
    metrics: tuple[str, ...]
    aggregations: tuple[str, ...]
    grain: timedelta
    filter: str | None
    window: timedelta


# (metric, aggregation) → one sample list per time series (several when split by dimension)
Series = dict[tuple[str, str], list[list[Sample]]]


@dataclass
class _Fetch:
    at: datetime
    ids: frozenset[str]
    done: anyio.Event = field(default_factory=anyio.Event)
    results: dict[str, Series] = field(default_factory=dict)
    error: str | None = None


class AzureMonitorSource:
    """The ``azureMonitor`` signal source."""

    def __init__(
        self,
        clients: AzureClients,
        clock: Clock,
        share_for: timedelta = timedelta(seconds=20),  # how long a failed read is shared
        history_chunk: timedelta = HISTORY_CHUNK,
    ) -> None:
        self._clients = clients
        self._clock = clock
        self._share_for = share_for
        self._history_chunk = history_chunk  # the range of one history call
        # the targets of each query shape, counted (a Cosmos DB database and container
        # share their account's metrics): what a batch read fetches
        self._members: dict[QueryShape, Counter[str]] = {}
        self._fetches: dict[QueryShape, _Fetch] = {}
        # resource ID → (target, objectives, their query shapes), for identical asks
        self._shape_cache: dict[
            str,
            tuple[Target, tuple[Objective, ...], dict[QueryShape, list[tuple[Objective, Part]]]],
        ] = {}

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Declare a target up front so the first fetch of its group includes it."""
        for shape in self._shapes(target, objectives):
            self._members.setdefault(shape, Counter())[target.metrics_id] += 1

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        """A target that is gone (a deleted app, a reload): later batches no longer read it."""
        for shape in self._shapes(target, objectives):
            members = self._members.get(shape)
            if members is not None:
                members[target.metrics_id] -= 1
                if members[target.metrics_id] <= 0:
                    del members[target.metrics_id]
                if not members:
                    del self._members[shape]
        self._shape_cache.pop(target.resource_id, None)

    def _shapes(
        self, target: Target, objectives: Sequence[Objective]
    ) -> dict[QueryShape, list[tuple[Objective, Part]]]:
        """:func:`_queries`, worked out once per target: a pass asks again with the same
        (immutable) target and objectives, until a reload brings new ones."""
        cached = self._shape_cache.get(target.resource_id)
        if (
            cached is not None
            and cached[0] is target
            and len(cached[1]) == len(objectives)
            and all(a is b for a, b in zip(cached[1], objectives, strict=True))
        ):
            return cached[2]
        shapes = _queries(target, objectives)
        self._shape_cache[target.resource_id] = (target, tuple(objectives), shapes)
        return shapes

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        """One observation per objective, by objective name."""
        self.register(target, objectives)
        answers: dict[tuple[str, str], tuple[Series, str | None]] = {}
        for shape, members in self._shapes(target, objectives).items():
            if shape.region:
                answer = await self._batched(shape, target.metrics_id, now)
            else:
                answer = await self._single(shape, target.metrics_id, now)
            for objective, part in members:
                answers[(objective.name, part)] = answer
        out: dict[str, Observation] = {}
        for objective in objectives:
            value = answers[(objective.name, "value")]
            whole = answers.get((objective.name, "whole"))
            out[objective.name] = _observation(target, objective, value, whole, now)
        return out

    async def history(
        self, target: Target, objective: Objective, start: datetime, end: datetime
    ) -> list[Sample]:
        """The objective's series from the grain's bucket holding ``start`` to ``end``,
        read a day at a time (the metrics API's comfortable size at a one-minute grain),
        for backtests. Azure answers the partial bucket at each end of a timespan too:
        each chunk keeps only its own buckets, so none is counted twice."""
        signal = metric_signal(objective)
        parts: list[tuple[str, str | None]] = [("value", signal.filter)]
        if signal.share_of is not None:
            parts.append(("whole", signal.share_of.filter))
        client = await self._clients.monitor(target.subscription)
        read: dict[str, list[Sample]] = {}
        for part, own in parts:
            where = _and(target.metrics_scope, own)
            samples: list[Sample] = []
            chunk = bucket(start, signal.grain)
            while chunk < end:
                until = min(end, chunk + self._history_chunk)
                response = await retry.call(
                    self._clock,
                    lambda chunk=chunk, until=until, where=where: client.metrics.list(  # type: ignore[misc]
                        target.metrics_id,
                        timespan=f"{_iso(chunk)}/{_iso(until)}",
                        interval=_iso_duration(signal.grain),
                        metricnames=signal.metric,
                        aggregation=signal.aggregation,
                        filter=where,
                        metricnamespace=signal.namespace or target.metrics_namespace,
                        top=MAX_SERIES if where else None,
                    ),
                )
                series: Series = {}
                for metric in response.value or []:
                    name = metric.name.value if metric.name else ""
                    timeseries = metric.timeseries or []
                    _collect(series, name or "", timeseries, (signal.aggregation,), (chunk, until))
                samples += _samples(series, signal, objective.comparison)
                chunk = until
            read[part] = samples
        return _share(read["value"], read["whole"]) if "whole" in read else read["value"]

    async def histories(
        self, wanted: Sequence[tuple[Target, Objective]], start: datetime, end: datetime
    ) -> dict[tuple[str, str], list[Sample]]:
        """Each (target's resource ID, objective name) → its series over [start, end),
        for backtests. Targets with a region are read through the batch API, 50 of one
        query's shape per call and a day at a time, so a week of a hundred apps is a few
        dozen calls, not seven hundred; the others one at a time (:meth:`history`)."""
        out: dict[tuple[str, str], list[Sample]] = {}
        by_target: dict[str, tuple[Target, list[Objective]]] = {}
        for target, objective in wanted:
            if not target.region:
                out[(target.resource_id, objective.name)] = await self.history(
                    target, objective, start, end
                )
                continue
            by_target.setdefault(target.resource_id, (target, []))[1].append(objective)
        groups: dict[QueryShape, dict[str, list[tuple[Target, Objective, Part]]]] = {}
        for target, objectives in by_target.values():
            for shape, members in _queries(target, objectives).items():
                key = replace(shape, window=timedelta(0))  # the range is the backtest's
                owners = groups.setdefault(key, {})
                for member, part in members:
                    owners.setdefault(target.metrics_id.lower(), []).append((target, member, part))
        parts: dict[tuple[str, str, Part], list[Sample]] = {}
        for shape, owners in groups.items():
            ids = sorted({members[0][0].metrics_id for members in owners.values()})
            read = await self._batch_history(shape, ids, start, end)
            for owner, asked in owners.items():
                for target, objective, part in asked:
                    signal = metric_signal(objective)
                    series = read.get(owner, {})
                    key3 = (target.resource_id, objective.name, part)
                    parts[key3] = _samples(series, signal, objective.comparison)
        for (resource_id, name, part), samples in parts.items():
            if part != "value":
                continue
            whole = parts.get((resource_id, name, "whole"))
            out[(resource_id, name)] = samples if whole is None else _share(samples, whole)
        return out

    async def _batch_history(
        self, shape: QueryShape, ids: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, Series]:
        """Every resource's series of one query's shape over [start, end)."""
        read: dict[str, Series] = {}
        chunk = bucket(start, shape.grain)
        while chunk < end:
            until = min(end, chunk + self._history_chunk)
            await self._query_batches(shape, ids, (chunk, until), read, keep=True)
            chunk = until
        return read

    async def _query_batches(
        self,
        shape: QueryShape,
        ids: Sequence[str],
        timespan: tuple[datetime, datetime],
        into: dict[str, Series],
        keep: bool = False,
    ) -> None:
        """Read one query's shape for ``ids`` over ``timespan``, 50 resources a call, adding
        each resource's series (by lower-case resource ID) to ``into``; with ``keep``, only
        the buckets that start inside the timespan (a history read in chunks)."""
        client = await self._clients.metrics(shape.region)
        within = timespan if keep else None

        async def read(batch: list[str]) -> None:
            values = await retry.call(
                self._clock,
                lambda: query_batch(
                    client,
                    resource_ids=batch,
                    namespace=shape.namespace,
                    names=shape.metrics,
                    timespan=timespan,
                    grain=shape.grain,
                    aggregations=shape.aggregations,
                    filter=shape.filter,
                    top=MAX_SERIES if shape.filter else None,
                ),
            )
            for result in values:
                for metric in result.get("value") or []:
                    owner = str(metric["id"]).lower().split(_METRICS_PATH)[0]
                    series = into.setdefault(owner, {})
                    name = (metric.get("name") or {}).get("value") or ""
                    _collect_json(
                        series, name, metric.get("timeseries") or [], shape.aggregations, within
                    )

        # a few calls in flight: a group of thousands is read in a fraction of the grain,
        # so the passes waiting on it are not held for the calls' sum
        limit = anyio.Semaphore(CONCURRENT_BATCHES)

        failed: list[Exception] = []

        async def bounded(batch: list[str]) -> None:
            async with limit:
                if failed:  # the read has failed already: ask no more
                    return
                try:
                    await read(batch)
                except _READ_ERRORS as exc:
                    failed.append(exc)

        async with anyio.create_task_group() as tg:
            for first in range(0, len(ids), MAX_BATCH):
                tg.start_soon(bounded, list(ids[first : first + MAX_BATCH]))
        if failed:
            raise failed[0]

    async def _batched(
        self, shape: QueryShape, resource_id: str, now: datetime
    ) -> tuple[Series, str | None]:
        fetch = self._fetches.get(shape)
        if fetch is None or resource_id not in fetch.ids or not self._serves(fetch, shape, now):
            fetch = _Fetch(at=now, ids=frozenset(self._members.get(shape) or {resource_id}))
            self._fetches[shape] = fetch
            await self._run_batch(shape, fetch, now)
        else:
            await fetch.done.wait()
        if fetch.error is not None:
            return {}, fetch.error
        return fetch.results.get(resource_id.lower(), {}), None

    def _serves(self, fetch: _Fetch, shape: QueryShape, now: datetime) -> bool:
        """Whether ``fetch`` still answers a pass at ``now``: one read per grain's bucket,
        a failed one for ``share_for`` (a fetch still running serves whoever asks)."""
        if not fetch.done.is_set():
            return True
        if fetch.error is not None:
            return now - fetch.at < self._share_for
        return bucket(now, shape.grain) == bucket(fetch.at, shape.grain)

    async def _run_batch(self, shape: QueryShape, fetch: _Fetch, now: datetime) -> None:
        try:
            await self._query_batches(
                shape, sorted(fetch.ids), (now - shape.window, now), fetch.results
            )
        except _READ_ERRORS as exc:
            fetch.error = retry.describe(exc)
        finally:
            fetch.done.set()

    async def _single(
        self, shape: QueryShape, resource_id: str, now: datetime
    ) -> tuple[Series, str | None]:
        try:
            client = await self._clients.monitor(shape.subscription)
            response = await retry.call(
                self._clock,
                lambda: client.metrics.list(
                    resource_id,
                    timespan=f"{_iso(now - shape.window)}/{_iso(now)}",
                    interval=_iso_duration(shape.grain),
                    metricnames=",".join(shape.metrics),
                    aggregation=",".join(shape.aggregations),
                    filter=shape.filter,
                    metricnamespace=shape.namespace,
                    top=MAX_SERIES if shape.filter else None,
                ),
            )
            series: Series = {}
            for metric in response.value or []:
                name = metric.name.value if metric.name else ""
                _collect(series, name or "", metric.timeseries or [], shape.aggregations)
            return series, None
        except (AzureError, OSError, ValueError, KeyError, TypeError) as exc:
            return {}, retry.describe(exc)


Part = str  # "value": the signal's own series; "whole": what it is a share of


def metric_signal(objective: Objective) -> MetricSignal:
    """This source only ever sees Azure Monitor objectives."""
    signal = objective.signal
    if not isinstance(signal, MetricSignal):
        raise TypeError(f"objective {objective.name} is not an Azure Monitor metric")
    return signal


def _and(*filters: str | None) -> str | None:
    present = [f"({f})" if " or " in f.lower() else f for f in filters if f]
    return " and ".join(present) or None


def _queries(
    target: Target, objectives: Iterable[Objective]
) -> dict[QueryShape, list[tuple[Objective, Part]]]:
    """Group a target's objectives into as few queries as their signals allow. A share
    (``shareOf``) needs two: its own filter, and the whole it is a share of."""
    grouped: dict[tuple[Any, ...], list[tuple[Objective, Part]]] = {}
    for objective in objectives:
        s = metric_signal(objective)
        parts = [("value", s.filter)]
        if s.share_of is not None:
            parts.append(("whole", s.share_of.filter))
        for part, own in parts:
            where = _and(target.metrics_scope, own)
            grouped.setdefault((s.namespace, s.grain, where), []).append((objective, part))
    return {_merge(target, key[2], group): group for key, group in grouped.items()}


def _merge(
    target: Target, where: str | None, members: Sequence[tuple[Objective, Part]]
) -> QueryShape:
    objectives = [o for o, _ in members]
    signal = metric_signal(objectives[0])
    window = max(o.for_ + o.staleness + o.signal.grain * 2 for o in objectives)
    return QueryShape(
        subscription=target.subscription,
        region=(target.region or "").lower(),
        namespace=signal.namespace or target.metrics_namespace,
        metrics=tuple(sorted({metric_signal(o).metric for o in objectives})),
        aggregations=tuple(sorted({metric_signal(o).aggregation for o in objectives})),
        grain=signal.grain,
        filter=where,
        window=window,
    )


def _collect(
    series: Series,
    metric: str,
    timeseries: Iterable[Any],
    aggs: Sequence[str],
    within: tuple[datetime, datetime] | None = None,
) -> None:
    """Keep every (possibly dimension-split) time series, one sample list each; only the
    buckets starting in [``within``) when given."""
    for aggregation in aggs:
        attr = _AGG_FIELD[aggregation]
        kept = series.setdefault((metric.lower(), aggregation), [])
        for ts in timeseries:
            samples = []
            for point in ts.data or []:
                stamp = getattr(point, "timestamp", None) or getattr(point, "time_stamp", None)
                if stamp is None or (within and not within[0] <= stamp < within[1]):
                    continue
                value = getattr(point, attr, None)
                samples.append(Sample(stamp, None if value is None else float(value)))
            kept.append(samples)


def _collect_json(
    series: Series,
    metric: str,
    timeseries: Iterable[dict[str, Any]],
    aggs: Sequence[str],
    within: tuple[datetime, datetime] | None = None,
) -> None:
    """:func:`_collect` for a batch answer as JSON (``timeStamp`` and one key per
    aggregation in each point)."""
    for aggregation in aggs:
        attr = _AGG_FIELD[aggregation]
        kept = series.setdefault((metric.lower(), aggregation), [])
        for ts in timeseries:
            samples = []
            for point in ts.get("data") or []:
                raw = point.get("timeStamp")
                if not raw:
                    continue
                stamp = parse_stamp(raw)
                if within and not within[0] <= stamp < within[1]:
                    continue
                value = point.get(attr)
                samples.append(Sample(stamp, None if value is None else float(value)))
            kept.append(samples)


def combine(split: Sequence[Sequence[Sample]], aggregation: str, comparison: str) -> list[Sample]:
    """Fold dimension-split series into one, toward the objective's worst side.

    Sums (``Total``, ``Count``) add back up to the whole. Other aggregations take, per
    bucket, the value that most threatens the objective — the largest for ``<``
    objectives, the smallest for ``>`` — so one bad replica is not averaged away.
    """
    if len(split) == 1 and all(a.ts < b.ts for a, b in pairwise(split[0])):
        return list(split[0])  # one series, in order: nothing to fold (the usual case)
    worst = max if comparison in ("<", "<=") else min
    merged: dict[datetime, float | None] = {}
    for samples in split:
        for sample in samples:
            prior = merged.get(sample.ts)
            if sample.value is None:
                merged.setdefault(sample.ts, None)
            elif prior is None:
                merged[sample.ts] = sample.value
            elif aggregation in ("Total", "Count"):
                merged[sample.ts] = prior + sample.value
            else:
                merged[sample.ts] = worst(prior, sample.value)
    return [Sample(t, v) for t, v in sorted(merged.items())]


def _observation(
    target: Target,
    objective: Objective,
    value: tuple[Series, str | None],
    whole: tuple[Series, str | None] | None,
    now: datetime,
) -> Observation:
    signal = metric_signal(objective)
    name = f"{signal.metric}/{signal.aggregation}"
    if signal.share_of is not None:
        name = f"{name} share"
    errors = [e for e in (value[1], whole[1] if whole else None) if e is not None]
    if errors:
        return Observation(target.resource_id, name, (), Quality.ERROR, now, errors[0])
    samples = _samples(value[0], signal, objective.comparison)
    if whole is not None:
        samples = _share(samples, _samples(whole[0], signal, objective.comparison))
    if not any(s.value is not None for s in samples):
        return Observation(target.resource_id, name, tuple(samples), Quality.MISSING, now)
    return Observation(target.resource_id, name, tuple(samples), Quality.GOOD, now)


def _samples(series: Series, signal: MetricSignal, comparison: str) -> list[Sample]:
    split = series.get((signal.metric.lower(), signal.aggregation), [])
    return combine(split, signal.aggregation, comparison)


def _share(part: Sequence[Sample], whole: Sequence[Sample]) -> list[Sample]:
    """``part`` as a percentage of ``whole`` per bucket. A bucket with no requests at all
    is 0 %; one the whole has no data for is unknown (None). A part missing where the
    whole has data is 0 — Azure sends no series for a filter nothing matched."""
    counted = {s.ts: s.value for s in part}
    out = []
    for sample in whole:
        if sample.value is None:
            out.append(Sample(sample.ts, None))
        elif sample.value == 0:
            out.append(Sample(sample.ts, 0.0))
        else:
            out.append(Sample(sample.ts, 100.0 * (counted.get(sample.ts) or 0.0) / sample.value))
    return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_duration(delta: timedelta) -> str:
    """PT1M, PT5M … PT1H, PT6H, PT12H, P1D: the spellings the metrics API accepts."""
    minutes = int(delta.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"P{minutes // 1440}D"
    if minutes % 60 == 0:
        return f"PT{minutes // 60}H"
    return f"PT{minutes}M"
