"""Objective evaluation: sustained windows, hysteresis and unknown data, as a table."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.evaluate import evaluate
from controller.model import Observation, Quality, Sample, VerdictState
from tests.conftest import START, make_policy

NOW = START + timedelta(minutes=30)
OBJ = make_policy().objectives[0]  # CPU < 70, clear 60, for 3m, grain 1m


def series(*values: float | None, end_age_minutes: int = 1) -> Observation:
    """Per-minute samples, the last one starting ``end_age_minutes`` before NOW."""
    last = NOW - timedelta(minutes=end_age_minutes)
    samples = tuple(
        Sample(last - timedelta(minutes=len(values) - 1 - i), v) for i, v in enumerate(values)
    )
    quality = Quality.GOOD if any(v is not None for v in values) else Quality.MISSING
    return Observation("app", "CpuPercentage/Average", samples, quality, NOW)


CASES = [
    # (values, previous state, expected state) — one comment per row says why.
    ((50, 55, 60, 65), None, VerdictState.OK),  # all under the threshold
    ((50, 80, 85, 90), None, VerdictState.BREACH),  # the last 3 buckets (= for: 3m) violate
    ((80, 85, 50, 90), None, VerdictState.PENDING),  # a dip inside the window: not sustained
    ((80, 90), None, VerdictState.PENDING),  # too short a history to prove 3 minutes
    ((None, 80, 85, 90), None, VerdictState.BREACH),  # the gap lies outside the window
    ((80, 85, None, 90), None, VerdictState.PENDING),  # a gap inside the window proves nothing
    ((70, 70, 70), None, VerdictState.BREACH),  # '<' 70: exactly 70 violates
    ((69.99, 69.99, 69.99), None, VerdictState.OK),  # just under holds
    ((90,), VerdictState.BREACH, VerdictState.BREACH),  # once in breach, one bad point keeps it
    ((65,), VerdictState.BREACH, VerdictState.RECOVERING),  # under 70 but over the clear line
    ((60,), VerdictState.BREACH, VerdictState.RECOVERING),  # the clear line itself is not past it
    ((59,), VerdictState.BREACH, VerdictState.OK),  # past the clear line: healthy again
    ((65,), VerdictState.RECOVERING, VerdictState.RECOVERING),  # still between the lines
    ((75,), VerdictState.RECOVERING, VerdictState.BREACH),  # back over while recovering
    ((65,), VerdictState.OK, VerdictState.OK),  # hysteresis only applies after a breach
]


@pytest.mark.parametrize(("values", "previous", "expected"), CASES)
def test_sustained_windows_and_hysteresis(
    values: tuple[float | None, ...], previous: VerdictState | None, expected: VerdictState
) -> None:
    """Each row: the verdict the samples and the previous state must give."""
    assert evaluate(OBJ, series(*values), NOW, previous).state is expected


@pytest.mark.parametrize(
    ("observation", "why"),
    [
        (series(None, None, None), "no data"),  # empty buckets are not zero
        (Observation("app", "cpu", (), Quality.MISSING, NOW), "no data"),
        (series(90, 95, 99, end_age_minutes=5), "stale"),  # newest point 4 min old > 3 grains
        (Observation("app", "cpu", (), Quality.ERROR, NOW, "HTTP 500"), "signal failed"),
    ],
)
def test_unknown_data_is_never_a_breach(observation: Observation, why: str) -> None:
    """Missing, null, stale or failed data is unknown, even when the last values were high."""
    for previous in (None, VerdictState.BREACH):
        verdict = evaluate(OBJ, observation, NOW, previous)
        assert verdict.state is VerdictState.UNKNOWN
        assert why in verdict.reason


def test_staleness_follows_the_policy() -> None:
    """``staleAfter`` widens the limit: the same 4-minute-old data is then trusted."""
    lenient = make_policy(objective={"staleAfter": "10m"}).objectives[0]
    verdict = evaluate(lenient, series(90, 95, 99, end_age_minutes=5), NOW)
    assert verdict.state is VerdictState.BREACH


@pytest.mark.parametrize(
    ("comparison", "threshold", "clear", "values", "expected"),
    [
        (">", 99.9, 99.95, (99.5, 99.0, 98.0), VerdictState.BREACH),  # availability fell
        (">", 99.9, 99.95, (99.95, 99.99, 100.0), VerdictState.OK),
        (">=", 10, 10, (9, 9, 9), VerdictState.BREACH),
        ("<=", 2.0, 1.5, (2.0, 2.0, 2.0), VerdictState.OK),  # '<=' 2: exactly 2 holds
    ],
)
def test_other_comparisons(
    comparison: str,
    threshold: float,
    clear: float,
    values: tuple[float, ...],
    expected: VerdictState,
) -> None:
    """Objectives written with '>' (availability) or '<=' (latency) break the right way."""
    objective = make_policy(
        objective={"comparison": comparison, "threshold": threshold, "clear": clear}
    ).objectives[0]
    assert evaluate(objective, series(*values), NOW).state is expected


def test_split_series_combine_toward_the_objectives_worst_side() -> None:
    """One bad replica is not averaged away: max for '<' objectives, min for '>', sums add."""
    from controller.signals.azure_monitor import combine

    t = NOW - timedelta(minutes=1)
    a, b = [Sample(t, 99.9)], [Sample(t, 50.0)]
    assert combine([a, b], "Average", "<")[0].value == 99.9
    assert combine([a, b], "Minimum", ">")[0].value == 50.0
    assert combine([a, b], "Total", "<")[0].value == 149.9
    assert combine([[Sample(t, None)], b], "Average", "<")[0].value == 50.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.none() | st.floats(0, 1e6)),
        max_size=15,
    ),
    st.sampled_from(["Average", "Maximum", "Minimum", "Total", "Count"]),
    st.sampled_from(["<", "<=", ">", ">="]),
)
def test_one_series_combines_as_the_fold_does(
    points: list[tuple[int, float | None]], aggregation: str, comparison: str
) -> None:
    """The short way for one series in order gives what folding it with an empty second
    series gives, for any series (out of order, repeated minutes, gaps)."""
    from controller.signals.azure_monitor import combine

    series = [Sample(START + timedelta(minutes=m), v) for m, v in points]
    assert combine([series], aggregation, comparison) == combine(
        [series, []], aggregation, comparison
    )
