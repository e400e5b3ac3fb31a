"""Azure Resource Graph over the emulated estate: rows, paging and the per-user quota.

Rows are built only for the resources of the subscriptions asked about, and only for
those that exist at the scenario's current time. A query's first page evaluates it
once and keeps the result; the pages its ``$skipToken`` leads to are slices of that
result, so a page of 1,000 rows costs the rows, not the estate (Resource Graph does
not promise that later pages see changes made since the first, and neither does this).
A token whose result has been let go is refused (400), as an expired one is in Azure;
the ``graph-drift`` fault shifts later pages as resources created or deleted between
pages shift them in Azure (a row repeated or skipped, ``totalRecords`` moved).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .containerapp import AppResource, configuration_json
from .cosmos import CosmosAccount
from .kql import Query
from .redis import RedisCache

TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
COLUMNS = (
    "id",
    "name",
    "type",
    "tenantId",
    "kind",
    "location",
    "resourceGroup",
    "subscriptionId",
    "managedBy",
    "sku",
    "plan",
    "properties",
    "tags",
    "identity",
    "zones",
    "extendedLocation",
)
MAX_TOP = 1000  # Resource Graph's largest page
DEFAULT_TOP = 100  # rows a query returns when it does not say ``$top`` (Microsoft's docs)
SNAPSHOTS_KEPT = 64
UNLIMITED_SHOWN = 1000  # x-ms-user-quota-remaining when the quota is off


class GraphError(ValueError):
    """A request Resource Graph refuses with 400 (the message names what is wrong)."""


def _row(
    resource_id: str, type_: str, location: str, tags: dict[str, str], props: Any
) -> dict[str, Any]:
    parts = resource_id.split("/")  # "", subscriptions, S, resourceGroups, RG, providers, ...
    return {
        "id": resource_id,
        "name": parts[-1],
        "type": type_,  # lower-case, as Resource Graph reports it
        "tenantId": TENANT_ID,
        "kind": "",
        "location": location.replace(" ", "").lower(),
        "resourceGroup": parts[4].lower(),  # Resource Graph lower-cases the group too
        "subscriptionId": parts[2],
        "managedBy": "",
        "sku": None,
        "plan": None,
        "properties": props,
        "tags": dict(tags),
        "identity": None,
        "zones": None,
        "extendedLocation": None,
    }


def row_of(res: Any) -> dict[str, Any]:
    """One ``Resources`` row for an emulated resource of any kind."""
    if isinstance(res, AppResource):
        spec = res.spec
        config = res.template
        props = {
            "provisioningState": "Succeeded",
            "runningStatus": "Running",
            "managedEnvironmentId": (
                f"/subscriptions/{spec.subscription}/resourceGroups/{spec.resource_group}"
                f"/providers/Microsoft.App/managedEnvironments/{spec.resource_group}-env"
            ),
            "latestRevisionName": res.latest_revision,
            "configuration": configuration_json(res),
            "template": {
                "scale": {"minReplicas": config.min_replicas, "maxReplicas": config.max_replicas}
            },
        }
        return _row(spec.resource_id, "microsoft.app/containerapps", spec.location, res.tags, props)
    if isinstance(res, RedisCache):
        props = {
            "provisioningState": res.provisioning_state,
            "sku": res.sku.to_json(),
            "hostName": f"{res.spec.name}.redis.cache.windows.net",
        }
        row = _row(res.resource_id, "microsoft.cache/redis", res.spec.location, res.tags, props)
        return row
    if isinstance(res, CosmosAccount):
        props = {"provisioningState": "Succeeded", "databaseAccountOfferType": "Standard"}
        return _row(
            res.account_id, "microsoft.documentdb/databaseaccounts", res.location, {}, props
        )
    raise TypeError(f"no Resource Graph row for {type(res).__name__}")


def exists(res: Any, now: datetime) -> bool:
    return not isinstance(res, AppResource) or res.exists(now)


# -- paging ------------------------------------------------------------------------------


def digest(query: str, subscriptions: Sequence[str], groups: Sequence[str]) -> str:
    """What a skip token is bound to: the query text and its scope."""
    scope = json.dumps([query, sorted(s.lower() for s in subscriptions), sorted(groups)])
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def make_token(snapshot: int, offset: int, bound_to: str) -> str:
    raw = json.dumps({"s": snapshot, "o": offset, "d": bound_to}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_token(token: str, bound_to: str) -> tuple[int, int]:
    """(snapshot, offset) from a skip token; GraphError if it is not this query's."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        snapshot, offset, owner = int(data["s"]), int(data["o"]), str(data["d"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise GraphError("The $skipToken is not valid.") from None
    if owner != bound_to or offset < 0:
        raise GraphError(
            "The $skipToken does not belong to this query and scope: send it with the same "
            "query and subscriptions that returned it."
        )
    return snapshot, offset


@dataclass
class Results:
    """Evaluated query results, kept for the pages that follow the first."""

    kept: OrderedDict[int, list[dict[str, Any]]] = field(default_factory=OrderedDict)
    next_id: int = 1

    def keep(self, rows: list[dict[str, Any]]) -> int:
        snapshot = self.next_id
        self.next_id += 1
        self.kept[snapshot] = rows
        while len(self.kept) > SNAPSHOTS_KEPT:
            self.kept.popitem(last=False)
        return snapshot

    def get(self, snapshot: int) -> list[dict[str, Any]] | None:
        rows = self.kept.get(snapshot)
        if rows is not None:
            self.kept.move_to_end(snapshot)
        return rows


def evaluate(query: Query, candidates: Iterator[Any], now: datetime) -> list[dict[str, Any]]:
    """Run ``query`` over the candidates that exist at ``now``."""
    return query.run(row_of(r) for r in candidates if exists(r, now))


# -- quota -------------------------------------------------------------------------------


@dataclass
class Window:
    start: datetime
    used: int = 0


@dataclass
class Quota:
    """Resource Graph's per-user quota: ``limit`` queries per ``window`` of scenario time
    (15 per 5 seconds by default). ``limit=None`` turns it off."""

    limit: int | None = 15
    window: timedelta = timedelta(seconds=5)
    users: dict[str, Window] = field(default_factory=dict)

    def _window(self, user: str, now: datetime) -> Window:
        current = self.users.get(user)
        if current is None or now >= current.start + self.window or now < current.start:
            current = self.users[user] = Window(now)
        return current

    def take(self, user: str, now: datetime) -> bool:
        """Count one query for ``user``; False (not counted) once the quota is spent."""
        if self.limit is None:
            return True
        current = self._window(user, now)
        if current.used >= self.limit:
            return False
        current.used += 1
        return True

    def headers(self, user: str, now: datetime, spent: bool = False) -> dict[str, str]:
        """``x-ms-user-quota-remaining`` / ``-resets-after``: the only throttling headers
        Resource Graph documents (no ``Retry-After``, even on a 429)."""
        current = self._window(user, now)
        if spent:
            left = 0
        elif self.limit is None:
            left = UNLIMITED_SHOWN
        else:
            left = max(self.limit - current.used, 0)
        reset = max((current.start + self.window - now).total_seconds(), 0.0)
        seconds = math.ceil(reset)
        hh, rest = divmod(seconds, 3600)
        mm, ss = divmod(rest, 60)
        return {
            "x-ms-user-quota-remaining": str(left),
            "x-ms-user-quota-resets-after": f"{hh:02d}:{mm:02d}:{ss:02d}",
        }
