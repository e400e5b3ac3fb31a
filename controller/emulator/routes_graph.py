"""``POST /providers/Microsoft.ResourceGraph/resources``: Resource Graph queries.

Answers in Resource Graph's shapes (``QueryResponse``; 400 ``BadRequest`` with an
``InvalidQuery`` detail naming the part of the query not understood), pages with an
opaque ``$skipToken`` bound to the query and its scope, and carries the per-user quota
headers on every answer (and, as documented, no ``Retry-After``: a throttled caller waits
for ``x-ms-user-quota-resets-after``). A query without ``$top`` gets 100 rows a page, as in
Azure. Faults: ``graph-throttle`` (429, quota shown spent), ``graph-error`` (500),
``graph-drift`` (later pages shifted as by resources created or deleted between pages) and
``graph-truncated`` (a result larger than a page comes back ``resultTruncated``, unpaged).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from aiohttp import web

from .graph import (
    COLUMNS,
    DEFAULT_TOP,
    MAX_TOP,
    GraphError,
    digest,
    evaluate,
    make_token,
    read_token,
)
from .kql import KqlError, parse
from .routing import Route, route
from .wire import json_response, read_json
from .world import World

OLDEST_API_VERSION = "2021-03-01"  # the first with objectArray results and $skipToken


def _user(request: web.Request) -> str:
    """Whom the quota is counted for: the bearer token's holder."""
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _bad(message: str, detail_code: str, headers: dict[str, str]) -> web.Response:
    body = {
        "error": {
            "code": "BadRequest",
            "message": "Please provide below info when asking for support: the query and "
            "the time of the request.",
            "details": [{"code": detail_code, "message": message}],
        }
    }
    return json_response(body, 400, {"x-ms-error-code": "BadRequest", **headers})


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GraphError(f"'{key}' must be a list of strings.")
    return value


def _int_option(options: dict[str, Any], key: str, low: int, high: int | None) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GraphError(f"'{key}' must be an integer >= {low}.")
    if high is not None and value > high:
        raise GraphError(f"'{key}' must be between {low} and {high}.")
    return value


async def resources(world: World, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
    now = world.now()
    user = _user(request)
    quota = world.graph_quota
    throttled = world.faults.active("graph-throttle", now) is not None
    if throttled or not quota.take(user, now):
        headers = quota.headers(user, now, spent=True)
        body = {
            "error": {
                "code": "RateLimiting",
                "message": "Please provide below info when asking for support: the user's "
                "quota of queries is spent"
                + (" (injected)." if throttled else "; retry after the window resets."),
            }
        }
        return json_response(body, 429, {"x-ms-error-code": "RateLimiting", **headers})
    headers = quota.headers(user, now)
    if world.faults.active("graph-error", now) is not None:
        body = {"error": {"code": "InternalServerError", "message": "Encountered internal "
                          "server error (injected)."}}  # fmt: skip
        return json_response(body, 500, {"x-ms-error-code": "InternalServerError", **headers})
    version = request.query.get("api-version", "")
    if version[:10] < OLDEST_API_VERSION:
        return _bad(
            f"api-version '{version}' is not served; use {OLDEST_API_VERSION} or newer.",
            "InvalidApiVersionParameter",
            headers,
        )
    try:
        return _answer(world, await read_json(request), headers, now)
    except ValueError as exc:  # KqlError, GraphError, bad JSON
        code = "InvalidQuery" if isinstance(exc, KqlError) else "InvalidRequestContent"
        message = f"Query is invalid: {exc}" if isinstance(exc, KqlError) else str(exc)
        return _bad(message, code, headers)


def _drift(world: World, now: datetime) -> int:
    """Rows the estate moved by before a later page (``graph-drift``'s ``shift``: created,
    > 0, repeats rows of the page before; deleted, < 0, skips rows)."""
    fault = world.faults.active("graph-drift", now)
    return 0 if fault is None else int(fault.params.get("shift", 1))


def _answer(world: World, body: Any, headers: dict[str, str], now: datetime) -> web.Response:
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise GraphError('Send {"subscriptions": [...], "query": "Resources | ..."}.')
    subscriptions = _strings(body, "subscriptions")
    groups = _strings(body, "managementGroups")
    if groups:
        raise GraphError("managementGroups scopes are not emulated; send subscriptions.")
    if not subscriptions:  # as in Azure: every subscription the caller can read
        subscriptions = world.subscriptions()
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise GraphError("'options' must be an object.")
    result_format = options.get("resultFormat", "objectArray")
    if result_format != "objectArray":
        raise GraphError(f"resultFormat '{result_format}' is not emulated; use objectArray.")
    top = _int_option(options, "$top", 1, MAX_TOP) or DEFAULT_TOP
    skip = _int_option(options, "$skip", 0, None) or 0
    token = options.get("$skipToken")
    text = body["query"]
    query = parse(text, COLUMNS)
    bound_to = digest(text, _strings(body, "subscriptions"), groups)
    drift = 0
    if token is not None:
        if not isinstance(token, str):
            raise GraphError("'$skipToken' must be a string.")
        snapshot, skip = read_token(token, bound_to)
        kept = world.graph_results.get(snapshot)
        if kept is None:  # let go: refused, never answered from a new evaluation
            raise GraphError("The $skipToken has expired: run the query again from its first page.")
        rows, drift = kept, _drift(world, now)
    else:
        rows = evaluate(query, world.in_subscriptions(subscriptions), now)
        snapshot = world.graph_results.keep(rows)
    start = max(skip - drift, 0)
    page = rows[start : start + top]
    answer: dict[str, Any] = {
        "totalRecords": max(len(rows) + drift, 0),
        "count": len(page),
        "resultTruncated": "false",
        "data": page,
        "facets": [],
    }
    end = start + len(page)
    if end < len(rows):
        # Resource Graph cannot page past a limit/take (nor, graph-truncated, at all)
        if query.limited or world.faults.active("graph-truncated", now) is not None:
            answer["resultTruncated"] = "true"
        else:
            answer["$skipToken"] = make_token(snapshot, end, bound_to)
    return json_response(answer, headers=headers)


GRAPH_ROUTES: list[Route] = [
    route("POST", r"/providers/Microsoft\.ResourceGraph/resources", resources, "graph"),
]
