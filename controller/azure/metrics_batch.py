"""The batch metrics call (``metrics:getBatch``), answered as plain JSON.

``MetricsClient.query_resources`` turns every data point into two model objects (the
generated one, then the public one), which at a fleet's scale is most of the
controller's CPU: ten thousand resources × a window of points every minute. This sends
the same request through the same client — its pipeline: credential, endpoint, timeouts,
the call counter, the write gate — with ``send_request``, the client's documented way to
send a request it has no method for, and hands back the answer's ``values`` as parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.monitor.querymetrics.aio import MetricsClient

API_VERSION = "2024-02-01"  # what azure-monitor-querymetrics 1.0.0 sends
_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"P{seconds // 86400}D"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "PT" + "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)


async def query_batch(
    client: MetricsClient,
    *,
    resource_ids: Sequence[str],
    namespace: str,
    names: Sequence[str],
    timespan: tuple[datetime, datetime],
    grain: timedelta,
    aggregations: Sequence[str],
    filter: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """One ``metrics:getBatch`` call: the answer's ``values``, one per resource. Raises
    :class:`HttpResponseError` (or its 401/404 kinds) on anything but 200, as the SDK does."""
    subscription = resource_ids[0].split("/")[2]
    params: dict[str, str] = {
        "api-version": API_VERSION,
        "starttime": _iso(timespan[0]),
        "endtime": _iso(timespan[1]),
        "interval": _iso_duration(grain),
        "metricnamespace": namespace,
        # a comma inside a name is encoded, as query_resources does
        "metricnames": ",".join(n.replace(",", "%2") for n in names),
        "aggregation": ",".join(aggregations),
    }
    if top is not None:
        params["top"] = str(top)
    if filter is not None:
        params["filter"] = filter
    request = HttpRequest(
        "POST",
        f"/subscriptions/{subscription}/metrics:getBatch",
        params=params,
        json={"resourceids": list(resource_ids)},
        headers={"Accept": "application/json"},
    )
    response = await client.send_request(request)
    body = await response.read()
    if response.status_code != 200:
        map_error(status_code=response.status_code, response=response, error_map=_ERRORS)
        raise HttpResponseError(response=response)
    values = response.json().get("values")
    if not isinstance(values, list):
        raise ValueError(f"a metrics batch answer without values: {body[:200]!r}")
    return values


@lru_cache(maxsize=4096)  # every resource of a batch has the same minutes
def parse_stamp(text: str) -> datetime:
    """An ISO 8601 time as Azure writes it (``Z`` or an offset, up to seven fraction
    digits, which ``fromisoformat`` does not take before Python 3.12), in UTC."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{(rest[:digits] + '000000')[:6]}{rest[digits:]}"
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
