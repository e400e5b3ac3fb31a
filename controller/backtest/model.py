"""What a backtest produced, as plain data: the report renders it, tests compare it.

One :class:`Backtest` per policy set replayed; each target has a trace per objective
(the values the decision core saw, with its threshold and clearing line, and the
windows it judged in breach) and markers for every decision that was not a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, overload

# "acted": applied (to Azure, or to a replay's simulated estate); "would-run": allowed by
# every guard in dry-run and not applied
MarkerKind = Literal["acted", "would-run", "denied", "pending-approval", "escalation"]


# One value on a chart: (when, value), the value None for no data (a gap, or unknown).
# Plain tuples: a week of a fleet is millions of them.
TimedValue = tuple[datetime, float | None]


class Point(NamedTuple):
    """A :data:`TimedValue` with names, for code that builds a few by hand."""

    ts: datetime
    value: float | None


class Points(Sequence[TimedValue]):
    """A chart's (time, value) pairs kept as two columns, paired as they are read: a
    replay's objectives share their target's column of times, and a week of a fleet
    makes millions of pairs no one may ever read."""

    def __init__(self, times: Sequence[datetime], values: Sequence[float | None]) -> None:
        if len(times) != len(values):
            raise ValueError(f"{len(times)} times for {len(values)} values")
        self.times = times
        self.values = values

    def __len__(self) -> int:
        return len(self.times)

    @overload
    def __getitem__(self, index: int) -> TimedValue: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[TimedValue]: ...

    def __getitem__(self, index: int | slice) -> TimedValue | Sequence[TimedValue]:
        if isinstance(index, slice):
            return Points(self.times[index], self.values[index])
        return self.times[index], self.values[index]

    def __iter__(self) -> Iterator[TimedValue]:
        return zip(self.times, self.values, strict=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Points):
            return self.times == other.times and self.values == other.values
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Points({len(self)} pairs)"


@dataclass(frozen=True)
class ObjectiveTrace:
    name: str
    measures: str  # what the signal measures (metric name, template, …)
    comparison: str  # "<", "<=", ">", ">="
    threshold: float
    clear: float  # the clearing line (the threshold when none is set)
    points: Sequence[TimedValue]
    breaches: tuple[tuple[datetime, datetime], ...]  # [start, end) judged in breach
    # [start, end) past the threshold: each breach from the first pass of its ``for``
    # window (the passes that judged it pending), the time a reaction can shorten
    exceeded: tuple[tuple[datetime, datetime], ...] = ()
    saturated: str | None = None  # why the values may understate demand, if they may


@dataclass(frozen=True)
class Marker:
    ts: datetime
    kind: MarkerKind
    action: str | None
    reason: str
    guard: str | None = None  # for a denial: which guard held it
    params: Mapping[str, Any] = field(default_factory=dict)
    before: Mapping[str, Any] = field(default_factory=dict)  # the target before the action
    after: Mapping[str, Any] = field(default_factory=dict)  # … and after it (or would be)


@dataclass(frozen=True)
class Cost:
    """Estimated extra spend of the actions taken, by unit, and in money."""

    units: Mapping[str, float]  # e.g. {"replica-hours": 3.5, "vcpu-hours": 1.0, …}
    total: float  # in the price table's currency
    currency: str = "USD"


@dataclass(frozen=True)
class TargetSummary:
    actions: Mapping[str, int]  # action → times applied
    denied: Mapping[str, int]  # guard → count
    breach_minutes: float  # time any objective was past its threshold, ``for`` window included
    first_action_minutes: float | None  # from the first breach's window to the first action
    breaker_openings: int
    escalations: int
    cost: Cost  # of the actions applied
    # dry-run: action → distinct proposals allowed and not applied (one proposal repeated
    # while nothing changed counts once), and what applying them would have cost
    would_run: Mapping[str, int] = field(default_factory=dict)
    would_cost: Cost | None = None
    # "objective: why": a series pinned at its ceiling while in breach understates
    # demand, so the replay may show fewer actions than the incident needed
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetTrace:
    policy: str
    target: str
    objectives: tuple[ObjectiveTrace, ...]
    markers: tuple[Marker, ...]
    summary: TargetSummary


@dataclass(frozen=True)
class Backtest:
    label: str  # the policy set's name (a path), to tell two sets apart in a comparison
    start: datetime
    end: datetime
    effects: bool  # whether actions changed the replayed signals (the effect model)
    targets: tuple[TargetTrace, ...]
    passes: int = 0  # reconcile passes run in full
    quiet_passes: int = 0  # passes known to change nothing, accounted for without running
    mode: str = "live"  # "live", "dry-run", or "mixed" (an audit log holding both)
    source: str = "replay"  # "replay" (a simulated estate) or "audit" (what a controller did)
