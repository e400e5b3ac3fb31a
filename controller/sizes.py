"""The CPU/memory pairs Azure Container Apps accepts, and the next one up.

Consumption plans take CPU in 0.25-core steps with memory at 2 GiB per core
(0.25/0.5Gi … 4.0/8Gi); any other combination is rejected by the service.
"""

from __future__ import annotations

CONTAINER_APP_CPU_STEPS: tuple[float, ...] = tuple(round(0.25 * i, 2) for i in range(1, 17))
GIB_PER_CORE = 2.0


def memory_for(cpu: float) -> str:
    """The memory string Container Apps pairs with ``cpu`` cores (``1.0`` → ``"2Gi"``)."""
    return f"{cpu * GIB_PER_CORE:g}Gi"


def parse_memory_gib(memory: str) -> float:
    """``"1.5Gi"`` → 1.5; also accepts ``Mi`` and ``G`` spellings the service returns."""
    text = memory.strip()
    for suffix, factor in (("Gi", 1.0), ("G", 1.0), ("Mi", 1 / 1024), ("M", 1 / 1024)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text) / (1024**3)


def next_cpu_step(current: float, ceiling: float, memory_gib: float = 0.0) -> float | None:
    """The smallest valid CPU above ``current``, not above ``ceiling``, whose paired memory
    is at least ``memory_gib`` — a scale-up never takes memory away."""
    for cpu in CONTAINER_APP_CPU_STEPS:
        if cpu <= current + 1e-9 or cpu > ceiling + 1e-9:
            continue
        if cpu * GIB_PER_CORE + 1e-9 >= memory_gib:
            return cpu
    return None


# Azure Cache for Redis: Basic and Standard are the C family (C0…C6), Premium is P (P1…P5).
CACHE_FAMILY = {"Basic": "C", "Standard": "C", "Premium": "P"}
CACHE_CAPACITIES = {"C": tuple(range(0, 7)), "P": tuple(range(1, 6))}
# Standard → Premium without losing memory: C3 6 GB → P1 6 GB, C4 13 → P2, C5 26 → P3, C6 53 → P4
PREMIUM_FOR_STANDARD = {0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 3, 6: 4}


def next_cache_size(
    tier: str, capacity: int, max_capacity: int, allow_tier_change: bool
) -> tuple[str, str, int] | None:
    """The next (tier, family, capacity) up, or None at the limit."""
    family = CACHE_FAMILY.get(tier)
    if family is None:
        return None
    larger = [c for c in CACHE_CAPACITIES[family] if capacity < c <= max_capacity]
    if larger:
        return tier, family, larger[0]
    if allow_tier_change and tier == "Basic":
        return "Standard", "C", capacity
    if allow_tier_change and tier == "Standard":
        premium = PREMIUM_FOR_STANDARD[capacity]
        return ("Premium", "P", premium) if premium <= max_capacity else None
    return None


def throughput_after(current: int, step: str | int, autoscale: bool, *, up: bool) -> int:
    """``current`` moved one ``step`` (``"20%"`` or RU/s) up or down, rounded the way the
    service takes it: manual RU/s in hundreds, autoscale maxima in thousands (up rounds
    up, down rounds down, so a step always moves at least one unit)."""
    unit = 1000 if autoscale else 100
    if isinstance(step, str):
        factor = 1 + float(step.rstrip("%")) / 100
        raw = current * factor if up else current / factor
    else:
        raw = current + step if up else current - step
    raw = round(raw, 6)  # 3000 × 1.1 is 3300.0000000000005: not a reason for one unit more
    units = -(-raw // unit) if up else raw // unit
    moved = int(units) * unit
    if up:
        return max(moved, current + unit)
    return min(moved, current - unit)


def throughput_floor(floor: int, autoscale: bool) -> int:
    """``floor`` rounded up to what the service accepts (hundreds, or thousands for an
    autoscale maximum): stepping back never asks for a value it would refuse."""
    unit = 1000 if autoscale else 100
    return -(-floor // unit) * unit
