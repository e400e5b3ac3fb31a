"""Metric catalogue and time-series arithmetic for Container Apps (no HTTP here).

Each metric maps a per-minute :class:`Sample` to a value; buckets coarser than a
minute aggregate the per-minute values. Only completed minutes exist, mimicking the
ingestion lag of Azure Monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .timeutil import MINUTE, floor_minute, format_datetime
from .workload import AppModel, Sample

NAMESPACE = "Microsoft.App/containerApps"
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
MAX_BUCKETS = 20_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MetricDef:
    name: str
    unit: str
    dimensions: tuple[str, ...]
    value: Callable[[Sample], float]
    per_replica: bool = True  # Total/Count multiply across replicas


METRICS: dict[str, MetricDef] = {
    m.name.lower(): m
    for m in (
        MetricDef("CpuPercentage", "Percent", ("podName",), lambda s: s.cpu_percent),
        MetricDef("MemoryPercentage", "Percent", ("podName",), lambda s: s.memory_percent),
        MetricDef(
            "UsageNanoCores", "NanoCores", ("revisionName", "podName"), lambda s: s.usage_nano_cores
        ),
        MetricDef(
            "WorkingSetBytes", "Bytes", ("revisionName", "podName"), lambda s: s.working_set_bytes
        ),
        MetricDef(
            "Replicas",
            "Count",
            ("revisionName", "deploymentName"),
            lambda s: float(s.replicas),
            per_replica=False,
        ),
        MetricDef(
            "RestartCount",
            "Count",
            ("revisionName", "podName"),
            lambda s: float(s.restarts),
            per_replica=False,
        ),
    )
}


def minute_aggregates(metric: MetricDef, sample: Sample) -> dict[str, float]:
    """Every aggregation for one minute (the value is constant within the minute)."""
    value = metric.value(sample)
    count = float(sample.replicas) if metric.per_replica else 1.0
    total = value * count if metric.per_replica else value
    return {"average": value, "minimum": value, "maximum": value, "total": total, "count": count}


def bucket_starts(start: datetime, end: datetime, grain: timedelta) -> list[datetime]:
    """Bucket boundaries covering [start, end), aligned to ``grain`` since the epoch."""
    step = int(grain.total_seconds())
    first = _EPOCH + timedelta(seconds=int((start - _EPOCH).total_seconds()) // step * step)
    count = max(0, -(-int((end - first).total_seconds()) // step))
    if count > MAX_BUCKETS:
        raise ValueError(f"the query asks for {count} points; at most {MAX_BUCKETS} are served")
    return [first + i * grain for i in range(count)]


def series(
    model: AppModel,
    metric: MetricDef,
    start: datetime,
    end: datetime,
    grain: timedelta,
    now: datetime,
    aggregations: list[str],
    empty: bool = False,
) -> list[dict[str, float | str]]:
    """The data points for one metric: a point per bucket with at least one completed minute.

    ``empty`` answers every point with a timestamp only (Azure's "no data" bucket).
    """
    cutoff = floor_minute(now)  # minute m is complete when m + 1 minute <= now
    points: list[dict[str, float | str]] = []
    for bucket in bucket_starts(start, end, grain):
        minutes = []
        m = bucket
        while m < bucket + grain and m < cutoff:
            minutes.append(minute_aggregates(metric, model.sample(m)))
            m += MINUTE
        if not minutes:
            break
        point: dict[str, float | str] = {"timeStamp": format_datetime(bucket)}
        if not empty:
            combined = {
                "average": sum(x["average"] for x in minutes) / len(minutes),
                "minimum": min(x["minimum"] for x in minutes),
                "maximum": max(x["maximum"] for x in minutes),
                "total": sum(x["total"] for x in minutes),
                "count": sum(x["count"] for x in minutes),
            }
            for agg in aggregations:
                point[agg] = round(combined[agg], 6)
        points.append(point)
    return points
