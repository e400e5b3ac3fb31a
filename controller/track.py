"""A target's recent objective values and capacity, pass by pass, for the status page's
track: bounded (:data:`TRACK_POINTS`), coarser further back, never written anywhere."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime

TRACK_POINTS = 40  # per target, whatever the run's length


@dataclass(frozen=True, slots=True)
class Point:
    ts: datetime
    values: tuple[float | None, ...]  # each objective's value, in the policy's order
    capacity: float | None  # the target's tracked capacity then (see controller.capacity)


class Track:
    """The newest points of one target. When full, every other point of its older half
    is dropped: the track keeps covering the whole run, at a lower resolution back then.

    Kept as flat arrays of doubles (None as NaN), not Point objects: every target holds
    a full track after 40 passes, and at 10,000 targets objects would cost ~80 MiB where
    arrays cost ~12 MiB. Points are made when the page asks."""

    __slots__ = ("_capacity", "_times", "_values", "_width", "size")

    def __init__(self, size: int = TRACK_POINTS) -> None:
        self.size = max(size, 4)
        self._times = array("d")
        self._values = array("d")  # each point's values, one after another
        self._capacity = array("d")
        self._width = 0  # values a point (the policy's objectives)

    def note(self, point: Point) -> None:
        if len(point.values) != self._width:  # another policy: a track of its own
            self._times, self._values, self._capacity = array("d"), array("d"), array("d")
            self._width = len(point.values)
        if len(self._times) >= self.size:
            self._thin()
        self._times.append(point.ts.timestamp())
        self._values.extend(_number(v) for v in point.values)
        self._capacity.append(_number(point.capacity))

    def _thin(self) -> None:
        half, width = self.size // 2, self._width
        kept = [*range(0, half, 2), *range(half, len(self._times))]
        self._times = array("d", (self._times[i] for i in kept))
        self._capacity = array("d", (self._capacity[i] for i in kept))
        self._values = array("d", (self._values[i * width + k] for i in kept for k in range(width)))

    @property
    def points(self) -> list[Point]:
        width = self._width
        return [
            Point(
                datetime.fromtimestamp(ts, UTC),
                tuple(_value(self._values[i * width + k]) for k in range(width)),
                _value(self._capacity[i]),
            )
            for i, ts in enumerate(self._times)
        ]


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _value(number: float) -> float | None:
    return None if math.isnan(number) else number
