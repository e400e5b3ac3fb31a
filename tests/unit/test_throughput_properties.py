"""Properties of throughput planning over any offer: RU/s never above the policy's
ceiling, never past the instant maximum unless a split is allowed, never below the floor."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import step_back
from controller.core.plan import plan
from controller.model import Proposal, ResourceState, Throughput, Verdict, VerdictState
from tests.conftest import make_policy

DB = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
    "/Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/db"
)
BREACH = (Verdict("cpu", VerdictState.BREACH, 90.0, 70.0, "breach"),)
OK = (Verdict("cpu", VerdictState.OK, 10.0, 70.0, "ok", worst=10.0),)

offers = st.builds(
    lambda manual, units, minimum, instant, pending: Throughput(
        units * 100 if manual else None,
        None if manual else units * 1000,
        minimum * 100,
        instant * 1000 if instant else None,
        pending,
    ),
    st.booleans(),
    st.integers(1, 400),
    st.integers(1, 100),
    st.one_of(st.none(), st.integers(1, 200)),
    st.booleans(),
)
steps = st.one_of(st.integers(100, 20_000), st.integers(1, 300).map(lambda p: f"{p}%"))


def policy(step: Any, ceiling: int, split: bool, baseline: int) -> Any:
    return make_policy(
        target={"type": "cosmosSqlDatabase", "resourceId": DB},
        remediation=[
            {
                "raiseThroughput": {
                    "step": step,
                    "maxThroughput": ceiling,
                    "allowPartitionSplit": split,
                }
            }
        ],
        stepBack={"baseline": {"throughput": baseline}},
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    offer=offers,
    step=steps,
    ceiling=st.integers(4, 1000).map(lambda c: c * 1000),
    split=st.booleans(),
    baseline=st.integers(1, 40).map(lambda b: b * 100),  # at most the lowest ceiling
)
def test_raises_and_lowers_stay_inside_every_limit(
    offer: Throughput, step: Any, ceiling: int, split: bool, baseline: int
) -> None:
    rules = policy(step, ceiling, split, baseline)
    state = ResourceState(DB, throughput=offer)
    current = offer.provisioned
    up = plan(rules, BREACH, state)
    if isinstance(up, Proposal):
        (value,) = up.after.values()
        assert not offer.pending
        assert current < value <= ceiling
        if not split and offer.instant_maximum is not None:
            assert value <= offer.instant_maximum
        assert value % (1000 if offer.manual is None else 100) == 0
    down = step_back.propose(rules, OK, state)
    if isinstance(down, Proposal):
        (value,) = down.after.values()
        assert not offer.pending
        assert max(baseline, offer.minimum) <= value < current
