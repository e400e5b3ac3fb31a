"""A backtest says what it cannot know and counts what a faster reaction saves: a series
pinned at its ceiling while in breach is flagged (it understates demand), and time in
breach includes the ``for`` window, so a variant that reacts sooner shows it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.backtest.engine import replay
from controller.backtest.history import History
from controller.backtest.report import render
from controller.model import ContainerSize, ResourceState
from controller.policy.schema import Policy
from tests.conftest import START, make_policy

pytestmark = pytest.mark.anyio


def history(policy: Policy, values: list[float]) -> History:
    """One value a minute from START for the policy's first objective, on one replica."""
    recorded = History()
    for minute, value in enumerate(values):
        recorded.add(policy.name, "cpu", START + timedelta(minutes=minute), value)
    recorded.states[policy.name] = ResourceState(
        policy.target.resource_id, 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1", 1
    )
    return recorded


async def summary_of(policy: Policy, values: list[float]) -> Any:
    result = await replay([policy], history(policy, values), START, START + timedelta(hours=1))
    [target] = result.targets
    return target


async def test_a_variant_that_reacts_two_minutes_sooner_shows_less_time_in_breach() -> None:
    """The same spike, the same ladder; only `for` differs (5m against 3m). Each scale-out
    halves CPU at once, so the judged breach lasts as long in both: only the time past the
    threshold before the action tells them apart."""
    values = [40.0] * 10 + [90.0] * 50
    slow = await summary_of(make_policy(objective={"for": "5m"}), values)
    fast = await summary_of(make_policy(objective={"for": "3m"}), values)
    assert slow.summary.actions == fast.summary.actions == {"scaleOut": 1}
    assert slow.summary.breach_minutes - fast.summary.breach_minutes == pytest.approx(2.0)
    assert fast.summary.breach_minutes == pytest.approx(3.0)  # 3 buckets judged, then acted
    [(since, _)] = fast.objectives[0].exceeded
    [(judged, _)] = fast.objectives[0].breaches
    assert judged - since == timedelta(minutes=2)  # the passes that judged it pending
    assert slow.summary.first_action_minutes == pytest.approx(4.0)
    assert fast.summary.first_action_minutes == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("signal", "values", "flagged"),
    [
        # a CPU percentage recorded at 100 %: demand was at least the capacity
        ({}, [40.0] * 10 + [100.0] * 50, "CpuPercentage read 100 %"),
        ({}, [40.0] * 10 + [90.0] * 50, None),  # in breach, below the ceiling
        # a count held at its recorded maximum for minutes: capped there
        (
            {"metric": "Requests", "aggregation": "Total"},
            [40.0] * 10 + [250.0] * 50,
            "held its recorded maximum 250 for",
        ),
        # a count still climbing: a peak, not a ceiling
        (
            {"metric": "Requests", "aggregation": "Total"},
            [40.0] * 10 + [100.0 + 10 * m for m in range(50)],
            None,
        ),
    ],
    ids=["cpu-at-100", "cpu-at-90", "count-flat-top", "count-climbing"],
)
async def test_a_series_pinned_at_its_ceiling_while_in_breach_is_flagged(
    signal: dict[str, str], values: list[float], flagged: str | None
) -> None:
    base = {"metric": "CpuPercentage", "aggregation": "Average", "grain": "1m"}
    policy = make_policy(objective={"signal": {**base, **signal}})
    target = await summary_of(policy, values)
    saturated = target.objectives[0].saturated
    if flagged is None:
        assert saturated is None and target.summary.warnings == ()
        return
    assert saturated is not None and flagged in saturated
    assert target.summary.warnings == (f"cpu: {saturated}",)
    result = await replay(
        [policy], history(policy, values), START, START + timedelta(hours=1), label="set"
    )
    html = render([result])
    assert '<p class="warning" data-objective="cpu">Saturated: ' in html
