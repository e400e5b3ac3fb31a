"""What actions cost, from what each one recorded: the size before it and the size it set.

An audit log has no simulated estate to measure, but each action line says what it
changed (``before``, ``params``): replicas, CPU and memory, RU/s, a cache's size. Each
size holds from its action to the next one (or the end of the period), and the capacity
above the first size, times that while, is priced in the units of
:mod:`controller.backtest.prices`. Restarts, reboots and rollbacks cost nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.backtest.model import Cost, Marker
from controller.backtest.prices import Prices, cost_of
from controller.sizes import parse_memory_gib

SIZE_KEYS = (
    "minReplicas",
    "cpu",
    "memory",
    "throughput",
    "maxThroughput",
    "sku",
    "family",
    "capacity",
)


def cost_of_markers(markers: Sequence[Marker], end: datetime, prices: Prices) -> Cost:
    """The extra spend of ``markers`` (actions taken, in time order) until ``end``."""
    return cost_of(units_of(markers, end), prices)


def units_of(markers: Sequence[Marker], end: datetime) -> dict[str, float]:
    """Billing units (unit → quantity) bought by ``markers`` until ``end``."""
    changes = [m for m in sorted(markers, key=lambda m: m.ts) if _size(m.params)]
    if not changes:
        return {}
    start = {**_size(changes[0].before)}
    sizes: list[tuple[datetime, dict[str, Any]]] = []
    current = dict(start)
    for marker in changes:
        current = {**current, **_size(marker.before), **_size(marker.params)}
        sizes.append((marker.ts, dict(current)))
    units: dict[str, float] = {}
    stops = [at for at, _ in sizes[1:]] + [end]
    for (at, size), until in zip(sizes, stops, strict=True):
        hours = max((until - at).total_seconds(), 0.0) / 3600
        for unit, quantity in _extra(start, size).items():
            units[unit] = round(units.get(unit, 0.0) + quantity * hours, 6)
    return {unit: quantity for unit, quantity in units.items() if quantity}


def _size(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in SIZE_KEYS and v is not None}


def _extra(start: Mapping[str, Any], size: Mapping[str, Any]) -> dict[str, float]:
    """Capacity of ``size`` above ``start``, per hour, by unit."""
    extra: dict[str, float] = {}
    replicas = float(size.get("minReplicas") or 1)
    if "minReplicas" in size:
        extra["replica-hours"] = max(replicas - float(start.get("minReplicas") or 0), 0.0)
    if "cpu" in size and "cpu" in start:
        extra["vcpu-hours"] = max(float(size["cpu"]) - float(start["cpu"]), 0.0) * replicas
    if "memory" in size and "memory" in start:
        gib = parse_memory_gib(str(size["memory"])) - parse_memory_gib(str(start["memory"]))
        extra["gib-hours"] = max(gib, 0.0) * replicas
    for key, unit in (("throughput", "ru-hours"), ("maxThroughput", "ru-hours-autoscale")):
        if key in size and key in start:
            extra[unit] = max(float(size[key]) - float(start[key]), 0.0)
    if "capacity" in size and "capacity" in start and _sku(size) != _sku(start):
        extra[f"redis:{_sku(size)}-hours"] = 1.0
        extra[f"redis:{_sku(start)}-hours"] = -1.0
    return extra


def _sku(size: Mapping[str, Any]) -> str:
    return f"{size.get('sku')}:{size.get('family')}{size.get('capacity')}"
