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
