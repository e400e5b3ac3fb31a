"""Whether an interrupted action landed, for every action that leaves a mark."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.settle import evidence, landed, view
from controller.model import CacheSku, ContainerSize, ResourceState, RevisionInfo, Throughput

APP = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/api"


def app(
    min_replicas: int = 1, cpu: float = 0.5, memory: str = "1Gi", **extra: Any
) -> ResourceState:
    return ResourceState(
        APP, min_replicas=min_replicas, containers=(ContainerSize("api", cpu, memory),), **extra
    )


def offer(manual: int | None, autoscale: int | None = None) -> ResourceState:
    return ResourceState("db", throughput=Throughput(manual, autoscale, 400, 10000))


def cache(capacity: int) -> ResourceState:
    return ResourceState("cache", cache=CacheSku("Standard", "C", capacity))


def serving(**weights: int) -> ResourceState:
    revisions = tuple(RevisionInfo(name, None, True, w) for name, w in weights.items())
    return ResourceState(APP, revisions=revisions, multiple_revisions=True)


SIZE_1 = {"container": "api", "cpu": 1.0, "memory": "2Gi"}
SIZE_05 = {"container": "api", "cpu": 0.5, "memory": "1Gi"}

CASES = [
    # action, intended, before, resource now, landed?
    ("scaleOut", {"minReplicas": 2, "maxReplicas": 10}, {"minReplicas": 1}, app(2), True),
    ("scaleOut", {"minReplicas": 2, "maxReplicas": 10}, {"minReplicas": 1}, app(1), False),
    # someone else set 5: not ours to claim, counted as failed
    ("scaleOut", {"minReplicas": 2, "maxReplicas": 10}, {"minReplicas": 1}, app(5), None),
    ("scaleIn", {"minReplicas": 1}, {"minReplicas": 2}, app(1), True),
    ("scaleUp", SIZE_1, SIZE_05, app(cpu=1.0, memory="2Gi"), True),
    ("scaleUp", SIZE_1, SIZE_05, app(), False),
    ("scaleDown", SIZE_05, SIZE_1, app(), True),
    ("rollbackRevision", {"traffic": {"r1": 100}}, {"traffic": {"r2": 100}}, serving(r1=100), True),
    (
        "rollbackRevision",
        {"traffic": {"r1": 100}},
        {"traffic": {"r2": 100}},
        serving(r2=100),
        False,
    ),
    ("raiseThroughput", {"throughput": 800}, {"throughput": 400}, offer(800), True),
    ("raiseThroughput", {"throughput": 800}, {"throughput": 400}, offer(400), False),
    ("raiseThroughput", {"maxThroughput": 5000}, {"maxThroughput": 4000}, offer(None, 5000), True),
    ("lowerThroughput", {"throughput": 400}, {"throughput": 800}, offer(800), False),
    (
        "scaleCache",
        {"sku": "Standard", "family": "C", "capacity": 2},
        {"sku": "Standard", "family": "C", "capacity": 1},
        cache(2),
        True,
    ),
    # a restart leaves no mark; an intent with nothing recorded proves nothing
    ("restartRevision", {"revision": "r1"}, {"revision": "r1"}, app(), None),
    ("scaleOut", {}, {}, app(7), None),
]


@pytest.mark.parametrize(("action", "intended", "before", "state", "expected"), CASES)
def test_landed_only_when_the_resource_shows_exactly_the_intent(
    action: str,
    intended: dict[str, Any],
    before: dict[str, Any],
    state: ResourceState,
    expected: bool | None,
) -> None:
    assert landed(action, intended, view(action, intended, state), before) is expected


def test_an_older_intent_is_judged_by_what_the_next_one_read() -> None:
    """1 → 2 landed and 2 → 3 landed: the app now shows 3, but the second intent read 2
    before acting, which proves the first."""
    first = {"minReplicas": 2, "maxReplicas": 10}
    shown = evidence("scaleOut", first, {"minReplicas": 2, "maxReplicas": 10})
    assert landed("scaleOut", first, shown, {"minReplicas": 1}) is True
    assert landed("scaleOut", first, view("scaleOut", first, app(3)), {"minReplicas": 1}) is None
    # a later intent of another kind read other values: no evidence, the resource decides
    assert evidence("scaleOut", first, SIZE_05) is None


def test_a_later_intent_on_another_container_is_no_evidence() -> None:
    """The next intent resized another container: what it read says nothing of this one,
    so the resource as it is now decides (here it shows the change: it landed)."""
    worker = {"container": "worker", "cpu": 1.0, "memory": "2Gi"}
    assert evidence("scaleUp", worker, SIZE_05) is None
    both = ResourceState(
        APP, containers=(ContainerSize("api", 0.5, "1Gi"), ContainerSize("worker", 1.0, "2Gi"))
    )
    before = {"container": "worker", "cpu": 0.5, "memory": "1Gi"}
    shown = evidence("scaleUp", worker, SIZE_05) or view("scaleUp", worker, both)
    assert landed("scaleUp", worker, shown, before) is True
    assert evidence("scaleUp", SIZE_1, SIZE_05) == SIZE_05  # the same container: evidence
