"""The least-privilege allow-list: every Azure operation the controller may call.

Each entry maps a request (method and path shape) to the Azure RBAC action it needs.
A test drives the controller through every scenario against the emulator, which
records each request, and checks that all of them fall on this list; ``remediator
permissions`` prints the actions for a custom role definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SUB = r"/subscriptions/[^/]+"
_RG = _SUB + r"/resourceGroups/[^/]+"
_APP = _RG + r"/providers/Microsoft\.App/containerApps/[^/]+"
_DB = _RG + r"/providers/Microsoft\.DocumentDB/databaseAccounts/[^/]+/sqlDatabases/[^/]+"
_CACHE = _RG + r"/providers/Microsoft\.Cache/redis/[^/]+"


@dataclass(frozen=True)
class Operation:
    method: str
    path: re.Pattern[str]
    action: str  # the RBAC action
    why: str


def _op(method: str, path: str, action: str, why: str) -> Operation:
    return Operation(method, re.compile(path + r"/?$", re.IGNORECASE), action, why)


ALLOWED: tuple[Operation, ...] = (
    _op("GET", _APP, "Microsoft.App/containerApps/read", "read scale, sizes and tags"),
    _op("PATCH", _APP, "Microsoft.App/containerApps/write", "scale out/in, scale up/down"),
    _op(
        "GET",
        _APP + r"/revisions(/[^/]+)?",
        "Microsoft.App/containerApps/revisions/read",
        "find the latest active revision and its replicas",
    ),
    _op(
        "POST",
        _APP + r"/revisions/[^/]+/restart",
        "Microsoft.App/containerApps/revisions/restart/action",
        "restart a revision",
    ),
    _op(
        "GET",
        _SUB + r"/providers/Microsoft\.App/locations/[^/]+/containerappOperationResults/[^/]+",
        "Microsoft.App/locations/containerappOperationResults/read",
        "follow a long-running update (its result)",
    ),
    _op(
        "GET",
        _SUB + r"/providers/Microsoft\.App/locations/[^/]+/containerappOperationStatuses/[^/]+",
        "Microsoft.App/locations/containerappOperationStatuses/read",
        "follow a long-running update (its status, where Azure answers with one)",
    ),
    _op(
        "GET",
        _RG,
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "read the remediator-pause tag of a target's resource group",
    ),
    _op(
        "GET",
        _RG + r"/providers/.+/providers/Microsoft\.Insights/metrics",
        "Microsoft.Insights/metrics/read",
        "metrics of one resource",
    ),
    _op(
        "POST",
        _SUB + r"/metrics:getBatch",
        "Microsoft.Insights/metrics/read",
        "metrics of up to 50 resources (Monitoring Reader on the subscription)",
    ),
    _op(
        "GET",
        _DB + r"/throughputSettings/default",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/read",
        "read a database's throughput offer",
    ),
    _op(
        "PUT",
        _DB + r"/throughputSettings/default",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/write",
        "raise or lower a database's throughput",
    ),
    _op(
        "GET",
        _DB + r"/containers/[^/]+/throughputSettings/default",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/read",
        "read a container's throughput offer",
    ),
    _op(
        "PUT",
        _DB + r"/containers/[^/]+/throughputSettings/default",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/write",
        "raise or lower a container's throughput",
    ),
    _op(
        "GET",
        _SUB + r"/providers/Microsoft\.DocumentDB/locations/[^/]+/operationsStatus/[^/]+",
        "Microsoft.DocumentDB/locations/operationsStatus/read",
        "follow a throughput change",
    ),
    _op(
        "POST",
        r"/providers/Microsoft\.ResourceGraph/resources",
        "Microsoft.ResourceGraph/resources/read",
        "find what a selector policy covers (Resource Graph answers only what the "
        "identity can read)",
    ),
    _op("GET", _CACHE, "Microsoft.Cache/redis/read", "read a cache's size and state"),
    _op("PATCH", _CACHE, "Microsoft.Cache/redis/write", "scale a cache (its sku only)"),
    _op(
        "POST",
        _CACHE + r"/forceReboot",
        "Microsoft.Cache/redis/forceReboot/action",
        "reboot a cache's nodes",
    ),
    _op(
        "POST",
        r"/v1/workspaces/[^/]+/query",
        "Microsoft.OperationalInsights/workspaces/query/read",
        "Log Analytics queries (Log Analytics Reader on the workspace)",
    ),
    _op(
        "POST",
        r"/v1" + _RG + r"/providers/microsoft\.insights/components/[^/]+/query",
        "Microsoft.Insights/components/query/read",
        "Application Insights queries, resource-centric",
    ),
)


def required_action(method: str, path: str) -> str | None:
    """The RBAC action a request needs, or None if it is not on the allow-list."""
    for op in ALLOWED:
        if op.method == method.upper() and op.path.match(path):
            return op.action
    return None


def role_actions() -> list[str]:
    """The distinct RBAC actions, sorted: a custom role's ``actions`` list."""
    return sorted({op.action for op in ALLOWED})
