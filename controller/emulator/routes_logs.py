"""Log Analytics query routes (``/v1/workspaces/{id}/query`` and resource-centric).

The emulator is not a KQL engine: it answers the controller's built-in templates,
which name themselves on their first line (``// remediator template: NAME``) and
scope by ``AppRoleName == 'app'`` (the Container App's name), from the workload model,
one row per ``bin(TimeGenerated, Nm)``. Anything else is a 400, as a query the service
could not run would be. ``logs-error`` answers 500; ``logs-partial`` answers the data
with a ``PartialError``, as Log Analytics does when part of the data is unreachable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from .containerapp import AppResource
from .metrics import bucket_starts
from .revisions import RequestSample
from .routing import Route, route
from .timeutil import MINUTE, floor_minute, format_datetime, parse_datetime, parse_iso_duration
from .wire import json_response, read_json
from .world import World

_TEMPLATE = re.compile(r"^//\s*remediator template:\s*(\w+)", re.MULTILINE)
_ROLE = re.compile(r"AppRoleName\s*==\s*'([^']*)'")
_BIN = re.compile(r"bin\(TimeGenerated,\s*(\d+)m\)")
VALUES: dict[str, Callable[[RequestSample], float]] = {
    "requestErrorRate": lambda s: 100.0 * s.failed / s.requests if s.requests else 0.0,
    "requestDurationP95": lambda s: s.p95_ms,
    "requestDurationP99": lambda s: s.p99_ms,
    "dependencyFailureRate": lambda s: s.dependency_failure_percent,
    "exceptionCount": lambda s: s.exceptions,
}


def _bad(code: str, message: str, status: int = 400) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status)


def _span(text: Any, now: datetime) -> tuple[datetime, datetime]:
    """``start/end``, ``start/PT1H`` or ``PT1H`` (ending now)."""
    if not isinstance(text, str) or not text:
        return now - timedelta(days=1), now
    if "/" not in text:
        return now - parse_iso_duration(text), now
    left, right = text.split("/", 1)
    start = parse_datetime(left)
    end = (
        start + parse_iso_duration(right)
        if right.upper().startswith("P")
        else parse_datetime(right)
    )
    return start, end


def _rows(
    res: AppResource, template: str, start: datetime, end: datetime, grain: timedelta, now: datetime
) -> list[list[Any]]:
    value = VALUES[template]
    cutoff = floor_minute(now)  # ingestion: only completed minutes are queryable
    rows = []
    for first in bucket_starts(start, min(end, cutoff), grain):
        minutes: list[RequestSample] = []
        m = first
        while m < first + grain and m < cutoff:
            minutes.append(res.requests(m))
            m += MINUTE
        if not minutes:
            continue
        merged = RequestSample(
            sum(x.requests for x in minutes),
            sum(x.failed for x in minutes),
            max(x.p95_ms for x in minutes),
            max(x.p99_ms for x in minutes),
            sum(x.dependency_failure_percent for x in minutes) / len(minutes),
            sum(x.exceptions for x in minutes),
        )
        rows.append([format_datetime(first), round(value(merged), 4)])
    return rows


async def query(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    now = world.now()
    if world.faults.active("logs-error", now) is not None:
        return _bad("InternalServerError", "The query failed (injected).", 500)
    try:
        body = await read_json(request)
    except ValueError:
        return _bad("BadArgumentError", "The request body is not valid JSON.")
    kql = body.get("query") if isinstance(body, dict) else None
    if not isinstance(kql, str):
        return _bad("BadArgumentError", "The request had some invalid properties: query.")
    template = _TEMPLATE.search(kql)
    role = _ROLE.search(kql)
    binned = _BIN.search(kql)
    if template is None or template.group(1) not in VALUES or role is None:
        return _bad(
            "BadArgumentError",
            "The emulator answers the built-in templates only (scoped by AppRoleName).",
        )
    res = world.find_by_name(role.group(1))
    try:
        start, end = _span(body.get("timespan"), now)
    except ValueError:
        return _bad("BadArgumentError", f"Invalid timespan {body.get('timespan')!r}.")
    grain = timedelta(minutes=int(binned.group(1))) if binned else MINUTE
    rows = _rows(res, template.group(1), start, end, grain, now) if res is not None else []
    answer: dict[str, Any] = {
        "tables": [
            {
                "name": "PrimaryResult",
                "columns": [
                    {"name": "TimeGenerated", "type": "datetime"},
                    {"name": "value", "type": "real"},
                ],
                "rows": rows,
            }
        ]
    }
    if world.faults.active("logs-partial", now) is not None:
        answer["error"] = {
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [
                {"code": "EngineError", "message": "A workspace did not answer (injected)."}
            ],
        }
    return json_response(answer)


LOGS_ROUTES: list[Route] = [
    route("POST", r"/v1/workspaces/(?P<ws>[^/]+)/query", query, "logs"),
    route("POST", r"/v1(?P<rid>/subscriptions/.+)/query", query, "logs"),
]
