"""Settling an interrupted action: did the change land? Decided from the resource alone.

The intent line records what the action meant to write (its ``after``) and what it read
before (``before``). The resource shows the change only when it holds exactly the
intended values; one that still holds the values read before shows it did not land;
anything else — someone else changed it meanwhile — cannot tell, and is counted as
failed. A success is never assumed.

When several intents are open, an older one is judged by what the next one read before
it acted (its ``before``), when that covers the same values: it is the resource as it
was right after the older one, where the resource as it is now may show only the last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.model import ResourceState

View = dict[str, Any]
_Viewer = Callable[[Mapping[str, Any], ResourceState], View | None]


def _replicas(intended: Mapping[str, Any], state: ResourceState) -> View | None:
    return {"minReplicas": state.min_replicas}


def _size(intended: Mapping[str, Any], state: ResourceState) -> View | None:
    name = intended.get("container")
    container = next((c for c in state.containers if c.name == name), None)
    if container is None:
        return None
    return {"container": container.name, "cpu": container.cpu, "memory": container.memory}


def _traffic(intended: Mapping[str, Any], state: ResourceState) -> View | None:
    return {"traffic": {r.name: r.traffic for r in state.revisions if r.traffic}}


def _throughput(intended: Mapping[str, Any], state: ResourceState) -> View | None:
    offer = state.throughput
    if offer is None:
        return None
    if offer.manual is not None:
        return {"throughput": offer.manual}
    return {"maxThroughput": offer.autoscale_max}


def _cache(intended: Mapping[str, Any], state: ResourceState) -> View | None:
    sku = state.cache
    if sku is None:
        return None
    return {"sku": sku.name, "family": sku.family, "capacity": sku.capacity}


# The values each action changes (the keys of its intent's ``after`` that matter), and
# how the resource shows them; actions absent here (restarts, reboots) leave no mark on
# the resource's configuration.
_ACTIONS: dict[str, tuple[tuple[str, ...], _Viewer]] = {
    "scaleOut": (("minReplicas",), _replicas),
    "scaleIn": (("minReplicas",), _replicas),
    "scaleUp": (("container", "cpu", "memory"), _size),
    "scaleDown": (("container", "cpu", "memory"), _size),
    "rollbackRevision": (("traffic",), _traffic),
    "raiseThroughput": (("throughput", "maxThroughput"), _throughput),
    "lowerThroughput": (("throughput", "maxThroughput"), _throughput),
    "scaleCache": (("sku", "family", "capacity"), _cache),
}


# keys that name which part of the resource an action changes, rather than a value
_IDENTITY = ("container",)


def view(action: str, intended: Mapping[str, Any], state: ResourceState) -> View | None:
    """What ``state`` holds of the values ``action`` changes; None if it cannot show them."""
    known = _ACTIONS.get(action)
    return None if known is None else known[1](intended, state)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) < 1e-9
    return bool(a == b)


def _holds(values: Mapping[str, Any], shown: View) -> bool | None:
    """Whether ``values`` are what ``shown`` holds (None: they do not cover it)."""
    if not all(key in values for key in shown):
        return None
    return all(_same(values[key], shown[key]) for key in shown)


def landed(
    action: str,
    intended: Mapping[str, Any],
    shown: View | None,
    before: Mapping[str, Any] | None = None,
) -> bool | None:
    """True if ``shown`` (a :func:`view`) holds exactly the intended values, False if it
    still holds ``before``, None if it cannot tell (no view, or a third value)."""
    if shown is None or action not in _ACTIONS or not intended:
        return None
    if _holds(intended, shown):
        return True
    if before is not None and _holds(before, shown):
        return False
    return None


def evidence(
    action: str, intended: Mapping[str, Any], later_before: Mapping[str, Any] | None
) -> View | None:
    """The values a later intent read before acting, when they cover what ``action``
    changes: the resource as it was after this action."""
    known = _ACTIONS.get(action)
    if known is None or not later_before:
        return None
    keys = [key for key in known[0] if key in intended]
    if not keys or not all(key in later_before for key in keys):
        return None
    if any(later_before[key] != intended[key] for key in _IDENTITY if key in keys):
        return None  # the later intent read another part (another container): no evidence
    return {key: later_before[key] for key in keys}
