"""A target's recent objective values and capacity, pass by pass, for the status page's
track: bounded (:data:`TRACK_POINTS`), coarser further back, never written anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

TRACK_POINTS = 40  # per target, whatever the run's length


@dataclass(frozen=True, slots=True)
class Point:
    ts: datetime
    values: tuple[float | None, ...]  # each objective's value, in the policy's order
    capacity: float | None  # the target's tracked capacity then (see controller.capacity)


class Track:
    """The newest points of one target. When full, every other point of its older half
    is dropped: the track keeps covering the whole run, at a lower resolution back then."""

    def __init__(self, size: int = TRACK_POINTS) -> None:
        self.size = max(size, 4)
        self.points: list[Point] = []

    def note(self, point: Point) -> None:
        if len(self.points) >= self.size:
            half = self.size // 2
            self.points = self.points[:half:2] + self.points[half:]
        self.points.append(point)
