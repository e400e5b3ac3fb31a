"""Azure Monitor metrics routes: single-resource ARM ``metrics.list`` and data-plane getBatch.

Both share one query model (window, grain, names, aggregations, dimension filter) and
one metric-object renderer, so the two APIs always agree on values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from .metered import Metered, MetricDef
from .metrics import AGGREGATIONS, series
from .routing import Route, route
from .timeutil import (
    MINUTE,
    format_datetime,
    format_iso_duration,
    parse_datetime,
    parse_iso_duration,
)
from .wire import error, json_response, read_json
from .world import World

MAX_BATCH_RESOURCES = 50
_DIMENSION = re.compile(r"(\w+)\s+eq\s+'([^']*)'", re.IGNORECASE)


class QueryError(Exception):
    """A query Azure Monitor would reject with 400 BadRequest."""


@dataclass(frozen=True)
class Query:
    start: datetime
    end: datetime
    grain: timedelta
    names: list[str]
    namespace: str | None
    aggregations: list[str]
    dimensions: list[tuple[str, str]]  # (name as written, value) from the filter


def _window_from_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """``start/end``, ``start/PT5M``, ``PT5M/end`` or ``PT5M`` (ending now); default last hour."""
    if not text:
        return now - timedelta(hours=1), now
    try:
        if "/" not in text:
            return now - parse_iso_duration(text), now
        left, right = text.split("/", 1)
        if left.upper().startswith("P"):
            end = parse_datetime(right)
            return end - parse_iso_duration(left), end
        start = parse_datetime(left)
        if right.upper().startswith("P"):
            return start, start + parse_iso_duration(right)
        return start, parse_datetime(right)
    except ValueError:
        raise QueryError(f"Invalid timespan '{text}'.") from None


def _parse_query(
    window: tuple[datetime, datetime],
    interval: str | None,
    names: str | None,
    aggregation: str | None,
    namespace: str | None,
    filter_text: str | None,
) -> Query:
    start, end = window
    if end <= start:
        raise QueryError("The timespan's end must be after its start.")
    try:
        grain = parse_iso_duration(interval) if interval else MINUTE
    except ValueError:
        raise QueryError(f"Invalid interval '{interval}'; use an ISO 8601 duration.") from None
    if grain < MINUTE or grain > timedelta(days=1) or grain.total_seconds() % 60:
        raise QueryError(f"Interval '{interval}' is not supported; use whole minutes (PT1M...).")
    if not names:
        raise QueryError("The metricnames parameter is required.")
    metrics = [n.strip() for n in names.split(",") if n.strip()]
    aggregations = [a.strip().lower() for a in (aggregation or "average").split(",") if a.strip()]
    unknown = [a for a in aggregations if a not in AGGREGATIONS]
    if unknown:
        raise QueryError(f"Unknown aggregation(s): {', '.join(unknown)}.")
    dimensions = [(m.group(1), m.group(2)) for m in _DIMENSION.finditer(filter_text or "")]
    return Query(start, end, grain, metrics, namespace, aggregations, dimensions)


def _resolve(res: Metered, query: Query) -> list[MetricDef]:
    """The query's metrics in ``res``'s catalogue, or the 400 Azure gives."""
    if query.namespace and query.namespace.lower() != res.namespace.lower():
        raise QueryError(
            f"Failed to find metric configuration for provider: {query.namespace}, "
            f"resource Id: {res.metrics_id}."
        )
    found = []
    for name in query.names:
        metric = res.catalog.get(name.lower())
        if metric is None:
            raise QueryError(
                f"Failed to find metric configuration for provider: {res.namespace}, "
                f"resource Id: {res.metrics_id}, metric: {name}, Valid metrics: "
                + ", ".join(m.name for m in res.catalog.values())
            )
        found.append(metric)
    return found


def _metadata(res: Metered, dimensions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Dimension values for the one series served; names come back lowercased, as Azure does."""
    out = []
    seen: set[str] = set()
    for name, value in dimensions:
        key = name.lower()
        if key in seen:
            continue
        seen.add(key)
        if value == "*":
            value = res.dimension_value(key)
        out.append({"name": {"value": key, "localizedValue": key}, "value": value})
    return out


def _metric_objects(
    world: World, res: Metered, resource_id: str, query: Query
) -> list[dict[str, Any]]:
    now = world.now()
    null = world.faults.active("metrics-null", now) is not None
    missing = world.faults.active("metrics-missing", now) is not None
    selected = {k.lower(): v for k, v in query.dimensions if v != "*"}
    out = []
    for metric in _resolve(res, query):
        timeseries: list[dict[str, Any]] = []
        if not missing:
            data = series(
                res, metric, query.start, query.end, query.grain, now,
                query.aggregations, empty=null, dimensions=selected,
            )  # fmt: skip
            timeseries = [{"metadatavalues": _metadata(res, query.dimensions), "data": data}]
        out.append(
            {
                "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{metric.name}",
                "type": "Microsoft.Insights/metrics",
                "name": {"value": metric.name, "localizedValue": metric.name},
                "displayDescription": "",
                "unit": metric.unit,
                "timeseries": timeseries,
                "errorCode": "Success",
            }
        )
    return out


async def single_resource(
    world: World, request: web.Request, p: dict[str, str]
) -> web.StreamResponse:
    """``GET {resourceId}/providers/Microsoft.Insights/metrics`` (MonitorManagementClient)."""
    resource_id = "/" + p["rid"].lstrip("/")
    res = world.find_metered(resource_id)
    if res is None:
        return error(404, "ResourceNotFound", f"The Resource '{resource_id}' was not found.")
    q = request.query
    try:
        query = _parse_query(
            _window_from_timespan(q.get("timespan"), world.now()),
            q.get("interval"),
            q.get("metricnames"),
            q.get("aggregation"),
            q.get("metricnamespace"),
            q.get("$filter"),
        )
        value = _metric_objects(world, res, resource_id, query)
    except (QueryError, ValueError) as exc:
        return error(400, "BadRequest", str(exc))
    points = sum(len(ts["data"]) for m in value for ts in m["timeseries"])
    return json_response(
        {
            "cost": points,
            "timespan": f"{format_datetime(query.start)}/{format_datetime(query.end)}",
            "interval": format_iso_duration(query.grain),
            "namespace": res.namespace,
            "resourceregion": res.location,
            "value": value,
        }
    )


async def batch(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    """``POST /subscriptions/{sub}/metrics:getBatch`` (MetricsClient.query_resources).

    Every id must be in the path's subscription (else 400, like Azure). An id in that
    subscription that the emulator does not know gets an entry whose metrics carry
    ``errorCode: "ResourceNotFound"`` and no timeseries, so one bad id does not fail
    the whole batch.
    """
    try:
        body = await read_json(request)
    except ValueError:
        return error(400, "BadRequest", "The request body is not valid JSON.")
    ids = body.get("resourceids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return error(400, "BadRequest", 'The body must be {"resourceids": ["/subscriptions/..."]}.')
    if len(ids) > MAX_BATCH_RESOURCES:
        return error(
            400,
            "BadRequest",
            f"The batch asks for {len(ids)} resources; at most {MAX_BATCH_RESOURCES} are allowed.",
        )
    prefix = f"/subscriptions/{p['sub']}/".lower()
    foreign = [i for i in ids if not i.lower().startswith(prefix)]
    if foreign:
        return error(
            400,
            "BadRequest",
            f"All resource ids must be in subscription {p['sub']}: {', '.join(foreign)}",
        )
    q = request.query
    now = world.now()
    try:
        start = parse_datetime(q["starttime"]) if q.get("starttime") else now - timedelta(hours=1)
        end = parse_datetime(q["endtime"]) if q.get("endtime") else now
        query = _parse_query(
            (start, end),
            q.get("interval"),
            q.get("metricnames"),
            q.get("aggregation"),
            q.get("metricnamespace"),
            q.get("filter"),
        )
    except (QueryError, ValueError) as exc:
        return error(400, "BadRequest", str(exc))
    values = []
    for resource_id in ids:
        res = world.find_metered(resource_id)
        if res is None:
            value = [
                {
                    "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{name}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": name, "localizedValue": name},
                    "unit": "Unspecified",
                    "timeseries": [],
                    "errorCode": "ResourceNotFound",
                    "errorMessage": f"The Resource '{resource_id}' was not found.",
                }
                for name in query.names
            ]
            region = None
        else:
            try:
                value = _metric_objects(world, res, resource_id, query)
            except QueryError as exc:
                return error(400, "BadRequest", str(exc))
            region = res.location
        values.append(
            {
                "starttime": format_datetime(query.start),
                "endtime": format_datetime(query.end),
                "interval": format_iso_duration(query.grain),
                "namespace": (query.namespace or "").lower(),
                "resourceregion": region,
                "resourceid": resource_id,
                "value": value,
            }
        )
    return json_response({"values": values})


METRICS_ROUTES: list[Route] = [
    route(
        "GET", r"(?P<rid>/.+?)/providers/Microsoft\.Insights/metrics", single_resource, "metrics"
    ),
    route("POST", r"/subscriptions/(?P<sub>[^/]+)/metrics:getBatch", batch, "metrics"),
]
