"""Settling an interrupted action: did the change land? Decided from the resource alone.

The intent line records what the action meant to write (its ``after``). The resource
shows the change only when it holds exactly those values; a resource that still holds
the values read before (``before``) shows it did not land; anything else — someone
else changed it meanwhile — cannot tell, and is counted as failed. A success is never
assumed: a settled result says "succeeded" only when the resource proves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.model import ResourceState

_Picture = Callable[[Mapping[str, Any], ResourceState], tuple[Any, Any] | None]


def _replicas(wanted: Mapping[str, Any], state: ResourceState) -> tuple[Any, Any] | None:
    if "minReplicas" not in wanted:
        return None
    return int(wanted["minReplicas"]), state.min_replicas


def _size(wanted: Mapping[str, Any], state: ResourceState) -> tuple[Any, Any] | None:
    name = wanted.get("container")
    if name is None or "cpu" not in wanted:
        return None
    container = next((c for c in state.containers if c.name == name), None)
    if container is None:
        return (name, wanted["cpu"]), None
    memory = wanted.get("memory")
    intended = (round(float(wanted["cpu"]), 4), memory)
    return intended, (round(container.cpu, 4), container.memory if memory is not None else None)


def _traffic(wanted: Mapping[str, Any], state: ResourceState) -> tuple[Any, Any] | None:
    traffic = wanted.get("traffic")
    if not isinstance(traffic, Mapping):
        return None
    shown = {r.name: r.traffic for r in state.revisions if r.traffic}
    return {str(k): int(v) for k, v in traffic.items() if int(v)}, shown


def _throughput(wanted: Mapping[str, Any], state: ResourceState) -> tuple[Any, Any] | None:
    offer = state.throughput
    if offer is None:
        return None
    if "throughput" in wanted:
        return int(wanted["throughput"]), offer.manual
    if "maxThroughput" in wanted:
        return int(wanted["maxThroughput"]), offer.autoscale_max
    return None


def _cache(wanted: Mapping[str, Any], state: ResourceState) -> tuple[Any, Any] | None:
    if state.cache is None or "capacity" not in wanted:
        return None
    intended = (str(wanted.get("sku")), str(wanted.get("family")), int(wanted["capacity"]))
    sku = state.cache
    return intended, (sku.name, sku.family, sku.capacity)


# What each action changes, as (intended, shown) pairs; actions absent here (restarts,
# reboots) leave no mark on the resource's configuration.
_PICTURES: dict[str, _Picture] = {
    "scaleOut": _replicas,
    "scaleIn": _replicas,
    "scaleUp": _size,
    "scaleDown": _size,
    "rollbackRevision": _traffic,
    "raiseThroughput": _throughput,
    "lowerThroughput": _throughput,
    "scaleCache": _cache,
}


def landed(
    action: str,
    intended: Mapping[str, Any],
    state: ResourceState,
    before: Mapping[str, Any] | None = None,
) -> bool | None:
    """True if ``state`` shows exactly the intended values, False if it still shows
    ``before`` (or, with no ``before`` given, anything else), None if it cannot tell."""
    picture = _PICTURES.get(action)
    if picture is None or not intended:
        return None
    pair = picture(intended, state)
    if pair is None:
        return None
    wanted, shown = pair
    if wanted == shown:
        return True
    if before is None:
        return False
    earlier = picture(before, state)
    if earlier is not None and earlier[0] == shown:
        return False
    return None  # neither what we meant nor what we read: someone else changed it
