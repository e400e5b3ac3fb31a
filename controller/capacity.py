"""A target's capacity in a person's terms — replicas and container sizes, RU/s, a cache
SKU — and an action's change as ``before → after``: for the status page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.model import ResourceState

# the number a track plots, by the key an action's before/after carries it under
_PLOTTED = ("minReplicas", "throughput", "maxThroughput", "capacity")


@dataclass(frozen=True)
class Capacity:
    text: str  # what a person reads: "1–10 replicas (2 running); api 0.5 CPU / 1Gi"
    value: float | None  # the one number a track plots
    unit: str  # what that number counts


def of_state(state: ResourceState) -> Capacity:
    """The capacity a read of the resource shows, as fits its kind."""
    offer = state.throughput
    if offer is not None:
        if offer.manual is not None:
            text = f"{offer.manual} RU/s (manual)"
        else:
            text = f"autoscale up to {offer.autoscale_max} RU/s"
        if offer.pending:
            text += "; a change is still being applied"
        return Capacity(text, float(offer.provisioned), "RU/s")
    cache = state.cache
    if cache is not None:
        text = f"{cache.name} {cache.family}{cache.capacity}"
        if state.cache_state not in (None, "Succeeded"):
            text += f" ({state.cache_state})"
        return Capacity(text, float(cache.capacity), f"{cache.name} {cache.family} size")
    running = "" if state.replicas is None else f" ({state.replicas} running)"
    sizes = "; ".join(f"{c.name} {_number(c.cpu)} CPU / {c.memory}" for c in state.containers)
    text = f"{state.min_replicas}–{state.max_replicas} replicas{running}"
    return Capacity(
        f"{text}; {sizes}" if sizes else text, float(state.min_replicas), "min replicas"
    )


def plotted(values: Mapping[str, Any]) -> float | None:
    """The tracked number in an action's own terms (its before or after), if it has one."""
    for key in _PLOTTED:
        value = values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """``key before → after`` for each value that differs; what stayed as it was when
    nothing did (an action that found the resource as proposed)."""
    keys = [k for k in after if k in before or after[k] is not None]
    changed = [
        f"{k} {_value(before.get(k))} → {_value(after[k])}"
        for k in keys
        if before.get(k) != after[k]
    ]
    if changed:
        return ", ".join(changed)
    same = ", ".join(f"{k} {_value(v)}" for k, v in (after or before).items())
    return f"{same} (unchanged)" if same else ""


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, Mapping):  # traffic: revision → percent
        return ", ".join(f"{k} {_value(v)}%" for k, v in value.items()) or "none"
    return _number(value) if isinstance(value, float) else str(value)


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")
