"""Actions priced from what they recorded: the size before and the size they set, held
until the next change or the end of the period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.backtest.action_cost import cost_of_markers, units_of
from controller.backtest.model import Backtest, Marker
from controller.backtest.prices import Prices
from controller.backtest.report import render

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float, action: str, before: dict[str, object], params: dict[str, object]) -> Marker:
    return Marker(T0 + timedelta(hours=hours), "acted", action, "", None, params, before)


def test_replicas_priced_from_the_first_size_until_the_next_change() -> None:
    markers = [
        at(0, "scaleOut", {"minReplicas": 1}, {"minReplicas": 2, "maxReplicas": 10}),
        at(1, "scaleOut", {"minReplicas": 2}, {"minReplicas": 3, "maxReplicas": 10}),
        at(3, "scaleIn", {"minReplicas": 3}, {"minReplicas": 1}),
    ]
    # 1 extra replica for 1 h, 2 extra for 2 h, none after
    assert units_of(markers, T0 + timedelta(hours=5)) == {"replica-hours": 5.0}
    cost = cost_of_markers(markers, T0 + timedelta(hours=5), Prices())
    assert cost.total == pytest.approx(5 * Prices().replica_hour)


def test_throughput_cpu_and_cache_sizes_have_their_units() -> None:
    end = T0 + timedelta(hours=2)
    ru = [at(0, "raiseThroughput", {"throughput": 400}, {"throughput": 1000})]
    assert units_of(ru, end) == {"ru-hours": 1200.0}
    cpu = [
        at(
            1,
            "scaleUp",
            {"cpu": 0.5, "memory": "1Gi"},
            {"container": "api", "cpu": 1.0, "memory": "2Gi"},
        )
    ]
    assert units_of(cpu, end) == {"vcpu-hours": 0.5, "gib-hours": 1.0}
    cache = [
        at(
            0,
            "scaleCache",
            {"sku": "Standard", "family": "C", "capacity": 1},
            {"sku": "Standard", "family": "C", "capacity": 2},
        )
    ]
    assert units_of(cache, end) == {"redis:Standard:C2-hours": 2.0, "redis:Standard:C1-hours": -2.0}
    assert cost_of_markers(cache, end, Prices()).total > 0
    restart = [at(0, "restartRevision", {"revision": "r1"}, {"revision": "r1"})]
    assert units_of(restart, end) == {}


@pytest.mark.parametrize(
    ("mode", "source", "said"),
    [
        ("live", "replay", "simulated estate: nothing in Azure changed"),
        ("dry-run", "replay", "replay in dry-run"),
        ("live", "audit", "live: actions were applied to Azure"),
        ("mixed", "audit", "dry-run and live mixed"),
    ],
)
def test_the_header_states_the_mode(mode: str, source: str, said: str) -> None:
    run = Backtest("set", T0, T0 + timedelta(hours=1), False, (), mode=mode, source=source)
    html = render([run])
    assert f'data-mode="{mode}"' in html and said in html
