"""A value that changes over scenario time and can be asked about any moment."""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


class History(Generic[T]):
    """Every value ever set, stamped; a query after a change still sees the old value
    for moments before it (as a metric window read later would)."""

    def __init__(self, start: datetime, first: T) -> None:
        self.start = start
        self._times: list[datetime] = [start]
        self._values: list[T] = [first]

    def set(self, at: datetime, value: T) -> None:
        index = bisect.bisect_right(self._times, at)
        self._times.insert(index, at)
        self._values.insert(index, value)

    def at(self, moment: datetime) -> T:
        index = bisect.bisect_right(self._times, max(moment, self.start)) - 1
        return self._values[max(index, 0)]

    def changes_within(self, start: datetime, end: datetime) -> list[datetime]:
        """The moments strictly inside (start, end) at which the value changed."""
        return [t for t in self._times if start < t < end]

    @property
    def current(self) -> T:
        return self._values[-1]
