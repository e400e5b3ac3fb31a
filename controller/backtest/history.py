"""Signal history to replay, and the recording format that stores it.

A recording is JSON lines (``remediator-recording/1``):

* a header: ``{"format": "remediator-recording/1", "recorded": TIME}``;
* one line per target's starting size: ``{"policy": NAME, "state": {...}}`` (the fields
  of the target the effect model needs: replicas, containers, throughput, cache size);
* one line per value: ``{"ts": TIME, "policy": NAME, "objective": NAME, "value": X}``
  (``null`` for a gap), one per objective and grain.

It is what ``remediator record`` writes and ``remediator backtest --recording`` reads, so
an incident can be shared and replayed without access to the Azure subscription.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.model import CacheSku, ContainerSize, ResourceState, Throughput

FORMAT = "remediator-recording/1"


class RecordingError(ValueError):
    """A recording that cannot be read; the message names the file and line."""


@dataclass
class History:
    """Per policy: each objective's values by time, and the target's starting state."""

    values: dict[tuple[str, str], dict[datetime, float | None]] = field(default_factory=dict)
    states: dict[str, ResourceState] = field(default_factory=dict)
    _valued: dict[tuple[str, str], tuple[list[datetime], list[float]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add(self, policy: str, objective: str, ts: datetime, value: float | None) -> None:
        """Keep a value; NaN or ±Inf is no value (a gap), as everywhere a value is read."""
        if value is not None and not math.isfinite(value):
            value = None
        self.values.setdefault((policy, objective), {})[ts] = value
        self._valued.pop((policy, objective), None)

    def series(self, policy: str, objective: str) -> list[tuple[datetime, float | None]]:
        return sorted(self.values.get((policy, objective), {}).items())

    def window(
        self, policy: str, objective: str, oldest: datetime, newest: datetime
    ) -> list[tuple[datetime, float]]:
        """The points with a value and ``oldest <= ts <= newest`` — by bisection, as a
        replay asks for a few dozen points of a week's series on every pass. (A gap has
        nothing for the evaluator to judge, so it is left out, as it would be unknown.)"""
        times, values = self.valued(policy, objective)
        lo, hi = bisect.bisect_left(times, oldest), bisect.bisect_right(times, newest)
        return list(zip(times[lo:hi], values[lo:hi], strict=True))

    def valued(self, policy: str, objective: str) -> tuple[list[datetime], list[float]]:
        """The points that have a value, oldest first, as (times, values)."""
        key = (policy, objective)
        index = self._valued.get(key)
        if index is None:
            points = [(t, v) for t, v in self.series(policy, objective) if v is not None]
            index = self._valued[key] = ([t for t, _ in points], [v for _, v in points])
        return index

    def span(self) -> tuple[datetime, datetime] | None:
        stamps = [ts for points in self.values.values() for ts in points]
        return (min(stamps), max(stamps)) if stamps else None


def state_json(state: ResourceState) -> dict[str, Any]:
    """The parts of a target's state the simulator changes."""
    out: dict[str, Any] = {
        "resourceId": state.resource_id,
        "minReplicas": state.min_replicas,
        "maxReplicas": state.max_replicas,
        "replicas": state.replicas,
        "containers": [
            {"name": c.name, "cpu": c.cpu, "memory": c.memory} for c in state.containers
        ],
        "latestRevision": state.latest_revision,
    }
    if state.throughput is not None:
        t = state.throughput
        out["throughput"] = {
            "manual": t.manual,
            "autoscaleMax": t.autoscale_max,
            "minimum": t.minimum,
            "instantMaximum": t.instant_maximum,
        }
    if state.cache is not None:
        out["cache"] = {
            "name": state.cache.name,
            "family": state.cache.family,
            "capacity": state.cache.capacity,
        }
    return out


def state_from_json(data: Mapping[str, Any]) -> ResourceState:
    throughput = data.get("throughput")
    cache = data.get("cache")
    return ResourceState(
        resource_id=str(data["resourceId"]),
        min_replicas=int(data.get("minReplicas", 0)),
        max_replicas=int(data.get("maxReplicas", 10)),
        replicas=data.get("replicas"),
        containers=tuple(
            ContainerSize(str(c["name"]), float(c["cpu"]), str(c["memory"]))
            for c in data.get("containers", [])
        ),
        latest_revision=data.get("latestRevision"),
        throughput=Throughput(
            throughput.get("manual"),
            throughput.get("autoscaleMax"),
            int(throughput.get("minimum", 400)),
            throughput.get("instantMaximum"),
        )
        if throughput
        else None,
        cache=CacheSku(str(cache["name"]), str(cache["family"]), int(cache["capacity"]))
        if cache
        else None,
        cache_state="Succeeded" if cache else None,
    )


class RecordingWriter:
    """Writes a recording as it is made: the header at once, then each target's size and
    each value as they come, flushed after every pass (:meth:`flush`), so an interrupted
    ``remediator record`` keeps everything up to its last pass. A value already written
    is written again only if it changed (a pass re-reads the buckets of its window)."""

    def __init__(self, path: Path, recorded: datetime) -> None:
        self._out = path.open("w", encoding="utf-8")
        self._written: dict[tuple[str, str, datetime], float | None] = {}
        self._line({"format": FORMAT, "recorded": recorded.isoformat()})

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self._out.close()

    def state(self, policy: str, state: ResourceState) -> None:
        self._line({"policy": policy, "state": state_json(state)})

    def value(self, policy: str, objective: str, ts: datetime, value: float | None) -> None:
        key = (policy, objective, ts)
        if key in self._written and self._written[key] == value:
            return
        self._written[key] = value
        self._line({"ts": ts.isoformat(), "policy": policy, "objective": objective, "value": value})

    def flush(self) -> None:
        self._out.flush()

    def _line(self, data: dict[str, Any]) -> None:
        self._out.write(json.dumps(data) + "\n")


def write_recording(path: Path, history: History, recorded: datetime) -> None:
    with RecordingWriter(path, recorded) as out:
        for policy, state in sorted(history.states.items()):
            out.state(policy, state)
        for (policy, objective), points in sorted(history.values.items()):
            for ts, value in sorted(points.items()):
                out.value(policy, objective, ts, value)


def read_recording(path: Path) -> History:
    history = History()
    for number, data in _lines(path):
        try:
            if number == 1:
                if data.get("format") != FORMAT:
                    raise ValueError(f"not a recording (expected format {FORMAT!r})")
                continue
            if "state" in data:
                history.states[str(data["policy"])] = state_from_json(data["state"])
                continue
            value = data["value"]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"value must be a number or null, got {value!r}")
            ts = datetime.fromisoformat(str(data["ts"]))
            history.add(str(data["policy"]), str(data["objective"]), ts, value)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{path}:{number}: {exc}") from None
    return history


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            if number == len(lines) and not text.endswith("\n"):
                return  # a recording cut off mid-line: everything before it stands
            raise RecordingError(f"{path}:{number}: not JSON") from None
        if not isinstance(data, dict):
            raise RecordingError(f"{path}:{number}: expected an object")
        yield number, data
