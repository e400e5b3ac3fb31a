"""What the metrics routes need from any emulated resource that has metrics.

Container Apps, Cosmos DB accounts and Redis caches each keep their own workload
model; the metrics routes see them only through :class:`Metered`, so the two metrics
APIs answer every kind of resource the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

Aggregates = dict[str, float]  # average, minimum, maximum, total, count for one minute


@dataclass(frozen=True)
class MetricDef:
    """One metric of one resource type: its name, unit and dimensions."""

    name: str
    unit: str
    dimensions: tuple[str, ...]


class Metered(Protocol):
    """A resource the metrics APIs can answer for."""

    @property
    def metrics_id(self) -> str:
        """The resource id metrics are read on (a Cosmos DB database's account)."""
        ...

    @property
    def namespace(self) -> str: ...

    @property
    def location(self) -> str: ...

    @property
    def catalog(self) -> Mapping[str, MetricDef]:
        """Metrics by lower-case name."""
        ...

    def minute(self, metric: MetricDef, at: datetime, dimensions: Mapping[str, str]) -> Aggregates:
        """Every aggregation of ``metric`` over the completed minute starting ``at``, for the
        series the (lower-case) ``dimensions`` filter selects."""
        ...

    def dimension_value(self, dimension: str) -> str:
        """The value a ``name eq '*'`` split reports for ``dimension`` (one series served)."""
        ...


def constant(value: float, count: float = 1.0, per_item: bool = True) -> Aggregates:
    """Aggregates of a value that held all minute, over ``count`` items (replicas …)."""
    total = value * count if per_item else value
    return {"average": value, "minimum": value, "maximum": value, "total": total, "count": count}


MinuteFn = Callable[[MetricDef, datetime, Mapping[str, str]], Aggregates]
