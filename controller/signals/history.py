"""Grain-bucketed history for sources that read one value per pass.

A PromQL instant query or an HTTP probe yields a single point, but evaluation needs a
sustained window of grain-aligned buckets. So each (target, objective) keeps its own
recent values, one per bucket ``floor(now, grain)`` (UTC epoch-aligned; the newest
value in a bucket wins), and every observation carries that history as its samples.
A read that produced no value leaves its bucket empty — a gap, which evaluation never
counts as a breach — and does not erase the buckets before it.

Memory is bounded by the retention: the objective's ``for`` window plus its staleness
plus two grains (what the Azure Monitor source reads, too), i.e. a few dozen floats
per objective.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

from controller.model import Observation, Quality, Sample
from controller.policy.schema import Objective

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[str, str]  # (target resource id, objective name)


def bucket(at: datetime, grain: timedelta) -> datetime:
    """The start of the grain-aligned bucket holding ``at``."""
    return EPOCH + grain * ((at - EPOCH) // grain)


def retention(objective: Objective) -> timedelta:
    """How far back samples are kept: enough for a full window behind a stale-ish newest."""
    return objective.for_ + objective.staleness + objective.signal.grain * 2


@dataclass(frozen=True)
class Reading:
    """One read: a value, or (quality MISSING or ERROR) the reason there is none."""

    value: float | None
    quality: Quality = Quality.GOOD
    reason: str | None = None

    @classmethod
    def missing(cls, reason: str) -> Reading:
        return cls(None, Quality.MISSING, reason)

    @classmethod
    def error(cls, reason: str) -> Reading:
        return cls(None, Quality.ERROR, reason)


@dataclass
class _Series:
    grain: timedelta
    values: dict[datetime, float] = field(default_factory=dict)  # bucket start → value


class History:
    """Bucketed values per (target, objective); one instance per signal source."""

    def __init__(self) -> None:
        self._series: dict[Key, _Series] = {}

    def observe(
        self,
        objective: Objective,
        target: str,
        signal: str,
        reading: Reading,
        now: datetime,
        observed_at: datetime,
    ) -> Observation:
        """Record ``reading`` in the bucket of ``now``; the observation carries the history."""
        grain = objective.signal.grain
        key = (target, objective.name)
        series = self._series.get(key)
        if series is None or series.grain != grain:  # a changed grain misaligns old buckets
            series = self._series[key] = _Series(grain)
        current = bucket(now, grain)
        if reading.value is not None:
            series.values[current] = reading.value
        oldest = current - retention(objective)
        # past the retention, or ahead of a clock that was set back: gone
        for stamp in [t for t in series.values if t < oldest or t > current]:
            del series.values[stamp]
        samples = tuple(Sample(t, v) for t, v in sorted(series.values.items()))
        return Observation(target, signal, samples, reading.quality, observed_at, reading.reason)

    def observe_all(
        self,
        objectives: Sequence[Objective],
        target: str,
        readings: dict[str, Reading],
        now: datetime,
        observed_at: datetime,
    ) -> dict[str, Observation]:
        """Record a pass's readings; one observation per objective, by name."""
        return {
            o.name: self.observe(o, target, o.measures, readings[o.name], now, observed_at)
            for o in objectives
        }


async def read_each(
    objectives: Sequence[Objective], read: Callable[[Objective], Awaitable[Reading]]
) -> dict[str, Reading]:
    """One reading per objective, read concurrently."""
    readings: dict[str, Reading] = {}

    async def one(objective: Objective) -> None:
        readings[objective.name] = await read(objective)

    async with anyio.create_task_group() as tg:
        for objective in objectives:
            tg.start_soon(one, objective)
    return readings
