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

    Kept as one flat array of doubles (each point its time, capacity and values; None as
    NaN), not Point objects: every target holds a full track after 40 passes, and at
    10,000 targets objects would cost ~80 MiB where the array costs ~10 MiB. The array
    is taken at its full size at the first point, so a short run holds what a long one
    does (a benchmark of minutes measures the steady state). Points are made when the
    page asks."""

    __slots__ = ("_data", "_stride", "count", "size")

    def __init__(self, size: int = TRACK_POINTS) -> None:
        self.size = max(size, 4)
        self._data = array("d")
        self._stride = 0  # doubles a point: time, capacity, then each objective's value
        self.count = 0

    def note(self, point: Point) -> None:
        stride = 2 + len(point.values)
        if stride != self._stride:  # the first point, or another policy: a track of its own
            self._data = array("d", bytes(8 * stride * self.size))
            self._stride, self.count = stride, 0
        if self.count >= self.size:
            self._thin()
        at = self.count * stride
        self._data[at] = point.ts.timestamp()
        self._data[at + 1] = _number(point.capacity)
        for k, value in enumerate(point.values):
            self._data[at + 2 + k] = _number(value)
        self.count += 1

    def _thin(self) -> None:
        """Drop every other point of the older half, in place."""
        half, stride, data = self.size // 2, self._stride, self._data
        kept = [*range(0, half, 2), *range(half, self.count)]
        for to, source in enumerate(kept):
            if to != source:
                data[to * stride : (to + 1) * stride] = data[
                    source * stride : (source + 1) * stride
                ]
        self.count = len(kept)

    @property
    def points(self) -> list[Point]:
        stride, data = self._stride, self._data
        return [
            Point(
                datetime.fromtimestamp(data[i * stride], UTC),
                tuple(_value(data[i * stride + k]) for k in range(2, stride)),
                _value(data[i * stride + 1]),
            )
            for i in range(self.count)
        ]


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _value(number: float) -> float | None:
    return None if math.isnan(number) else number
