"""Time-series arithmetic for every metered resource, and the Container Apps catalogue.

A resource gives each completed minute's aggregates; buckets coarser than a minute
combine them. Only completed minutes exist, mimicking the ingestion lag of Azure
Monitor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .metered import Aggregates, Metered, MetricDef, constant
from .timeutil import MINUTE, floor_minute, format_datetime
from .workload import Sample

NAMESPACE = "Microsoft.App/containerApps"
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
MAX_BUCKETS = 20_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AppMetric:
    definition: MetricDef
    value: Callable[[Sample], float]
    per_replica: bool = True  # Total/Count multiply across replicas


APP_METRICS: dict[str, AppMetric] = {
    m.definition.name.lower(): m
    for m in (
        AppMetric(MetricDef("CpuPercentage", "Percent", ("podName",)), lambda s: s.cpu_percent),
        AppMetric(
            MetricDef("MemoryPercentage", "Percent", ("podName",)), lambda s: s.memory_percent
        ),
        AppMetric(
            MetricDef("UsageNanoCores", "NanoCores", ("revisionName", "podName")),
            lambda s: s.usage_nano_cores,
        ),
        AppMetric(
            MetricDef("WorkingSetBytes", "Bytes", ("revisionName", "podName")),
            lambda s: s.working_set_bytes,
        ),
        AppMetric(
            MetricDef("Replicas", "Count", ("revisionName", "deploymentName")),
            lambda s: float(s.replicas),
            per_replica=False,
        ),
        AppMetric(
            MetricDef("RestartCount", "Count", ("revisionName", "podName")),
            lambda s: float(s.restarts),
            per_replica=False,
        ),
    )
}
APP_CATALOG: dict[str, MetricDef] = {k: m.definition for k, m in APP_METRICS.items()}


def app_minute(sample: Sample, metric: MetricDef) -> Aggregates:
    """Every aggregation of a Container App metric for one minute (constant within it)."""
    spec = APP_METRICS[metric.name.lower()]
    count = float(sample.replicas) if spec.per_replica else 1.0
    return constant(spec.value(sample), count, spec.per_replica)


def bucket_starts(start: datetime, end: datetime, grain: timedelta) -> list[datetime]:
    """Bucket boundaries covering [start, end), aligned to ``grain`` since the epoch."""
    step = int(grain.total_seconds())
    first = _EPOCH + timedelta(seconds=int((start - _EPOCH).total_seconds()) // step * step)
    count = max(0, -(-int((end - first).total_seconds()) // step))
    if count > MAX_BUCKETS:
        raise ValueError(f"the query asks for {count} points; at most {MAX_BUCKETS} are served")
    return [first + i * grain for i in range(count)]


def series(
    resource: Metered,
    metric: MetricDef,
    start: datetime,
    end: datetime,
    grain: timedelta,
    now: datetime,
    aggregations: list[str],
    empty: bool = False,
    dimensions: Mapping[str, str] | None = None,
) -> list[dict[str, float | str]]:
    """The data points for one metric: a point per bucket with at least one completed minute.

    ``empty`` answers every point with a timestamp only (Azure's "no data" bucket), as
    are the minutes before a resource was created.
    """
    cutoff = floor_minute(now)  # minute m is complete when m + 1 minute <= now
    born: datetime | None = getattr(resource, "created", None)
    points: list[dict[str, float | str]] = []
    for bucket in bucket_starts(start, end, grain):
        minutes = []
        complete = False
        m = bucket
        while m < bucket + grain and m < cutoff:
            complete = True
            if born is None or m >= born:
                minutes.append(resource.minute(metric, m, dimensions or {}))
            m += MINUTE
        if not complete:
            break
        point: dict[str, float | str] = {"timeStamp": format_datetime(bucket)}
        if not empty and minutes:
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
