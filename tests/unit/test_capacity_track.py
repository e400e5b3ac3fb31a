"""The status page's capacity in a person's terms, an action's before → after, and the
bounded track of recent passes."""

from __future__ import annotations

import sys
from datetime import timedelta

from controller import capacity
from controller.model import CacheSku, ContainerSize, ResourceState, Throughput
from controller.track import Point, Track
from tests.conftest import START


def test_capacity_as_fits_the_kind() -> None:
    app = ResourceState(
        "app", 2, 10, (ContainerSize("api", 0.5, "1Gi"), ContainerSize("side", 0.25, "0.5Gi")),
        replicas=3,
    )  # fmt: skip
    assert capacity.of_state(app) == capacity.Capacity(
        "2–10 replicas (3 running); api 0.5 CPU / 1Gi; side 0.25 CPU / 0.5Gi", 2.0, "min replicas"
    )
    manual = ResourceState("db", throughput=Throughput(800, None, 400, 10000))
    assert capacity.of_state(manual).text == "800 RU/s (manual)"
    autoscale = ResourceState("db", throughput=Throughput(None, 4000, 400, None, pending=True))
    assert capacity.of_state(autoscale) == capacity.Capacity(
        "autoscale up to 4000 RU/s; a change is still being applied", 4000.0, "RU/s"
    )
    cache = ResourceState("redis", cache=CacheSku("Standard", "C", 1), cache_state="Scaling")
    assert capacity.of_state(cache).text == "Standard C1 (Scaling)"
    assert capacity.of_state(cache).value == 1.0


def test_a_change_reads_before_to_after() -> None:
    assert capacity.change({"minReplicas": 1, "maxReplicas": 10}, {"minReplicas": 2, "maxReplicas": 10}) == "minReplicas 1 → 2"  # fmt: skip
    assert capacity.change({"maxThroughput": 4000}, {"maxThroughput": 6000}) == "maxThroughput 4000 → 6000"  # fmt: skip
    assert (
        capacity.change({"traffic": {"r2": 100}}, {"traffic": {"r1": 100}})
        == "traffic r2 100% → r1 100%"
    )
    assert capacity.change({"minReplicas": 2}, {"minReplicas": 2}) == "minReplicas 2 (unchanged)"
    assert capacity.plotted({"sku": "Standard", "family": "C", "capacity": 2}) == 2.0
    assert capacity.plotted({"container": "api", "cpu": 1.0}) is None


def test_the_track_stays_bounded_and_covers_the_whole_run() -> None:
    """Its memory too: taken in full at the first point, so a run of minutes holds what a
    run of weeks does (what the fleet benchmark's peak RSS relies on)."""
    track = Track(size=8)
    track.note(Point(START, (0.0,), 1.0))
    held = sys.getsizeof(track._data)
    for minute in range(1, 100):
        track.note(Point(START + timedelta(minutes=minute), (float(minute),), 1.0))
        assert sys.getsizeof(track._data) == held
    assert len(track.points) <= 8
    assert track.points[-1].ts == START + timedelta(minutes=99)
    assert track.points[0].ts == START  # coarser further back, but from the start
    assert [p.ts for p in track.points] == sorted(p.ts for p in track.points)


def test_the_track_gives_back_what_was_noted_gaps_included() -> None:
    """Values and capacity come back as noted, an unread value (None) as None, times to
    the microsecond; a track reused for a policy with other objectives starts afresh."""
    track = Track(size=8)
    noted = [
        Point(START + timedelta(seconds=30 * i, microseconds=7), (float(i), None), 2.0 * i or None)
        for i in range(5)
    ]
    for point in noted:
        track.note(point)
    assert track.points == noted
    track.note(Point(START + timedelta(hours=1), (1.0,), None))
    assert track.points == [Point(START + timedelta(hours=1), (1.0,), None)]
