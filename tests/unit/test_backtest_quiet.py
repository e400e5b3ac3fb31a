"""Quiet passes change nothing: a replay that accounts for them without running them
decides, writes and charts exactly what a replay running every pass in full does.

Hypothesis builds fleets of apps with random load (plateaus, spikes shared across the
fleet so fail static engages, gaps and silent stretches), random step-back rules and
intervals, live or dry-run, with or without the effect model; both replays must leave
the same audit log (every line, in order) and the same traces.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.audit.log import MemoryAudit
from controller.backtest.engine import replay
from controller.backtest.history import History
from controller.backtest.model import Backtest
from controller.model import ContainerSize, Mode, ResourceState, Throughput
from controller.policy.schema import Policy
from tests.conftest import BASE_POLICY, START

HOURS = 8


def app_policy(
    index: int,
    step_back: dict[str, Any] | None,
    interval: str | None,
    grain: str = "1m",
    declared: list[dict[str, Any]] | None = None,
) -> Policy:
    data = copy.deepcopy(BASE_POLICY)
    if declared:
        data["backtest"] = {"effects": declared}
    data["objectives"][0]["signal"]["grain"] = grain
    if grain == "5m":
        data["objectives"][0]["for"] = "10m"  # a window of at least one grain
    data["metadata"]["name"] = f"app-{index}"
    data["target"]["resourceId"] = data["target"]["resourceId"] + f"-{index}"
    data["objectives"].append(
        {
            "name": "memory",
            "signal": {"metric": "MemoryPercentage", "aggregation": "Average", "grain": "1m"},
            "comparison": "<",
            "threshold": 80,
            "for": "5m",
        }
    )
    if step_back is not None:
        data["stepBack"] = step_back
    if interval is not None:
        data["interval"] = interval
    return Policy.model_validate(data)


# a stretch of load: (points, cpu % — None or NaN for a gap —, whether points are missing)
stretch = st.tuples(
    st.integers(1, 90),
    st.one_of(st.none(), st.floats(5, 100), st.just(float("nan"))),
    st.booleans(),
)
app = st.fixed_dictionaries(
    {
        "stretches": st.lists(stretch, min_size=1, max_size=8),
        "memory": st.floats(10, 95),
        "step_back": st.one_of(
            st.none(),
            st.builds(
                lambda stable, cooldown: {
                    "baseline": {"minReplicas": 1, "cpu": 0.5},
                    "stableFor": f"{stable}m",
                    "cooldown": f"{cooldown}m",
                },
                st.integers(1, 40),
                st.integers(1, 30),
            ),
        ),
        "interval": st.sampled_from([None, "1m", "2m", "90s"]),
        # cpu points every so many seconds (off the pass grid too), at a grain of
        "spacing": st.sampled_from([60, 60, 45, 90, 300]),
        "grain": st.sampled_from(["1m", "1m", "5m"]),
        # what the policy declares its actions do, beyond the built-in model
        "declared": st.sampled_from(
            [
                None,
                [{"action": "scaleOut", "objective": "memory", "factor": 0.5, "for": "30m"}],
                [
                    {"action": "scaleOut", "objective": "cpu", "value": 20},
                    {"action": "scaleUp", "objective": "cpu", "factor": 1.5, "for": "10m"},
                ],
            ]
        ),
    }
)


def build(
    apps: list[dict[str, Any]], shared_spike: tuple[int, int] | None
) -> tuple[list[Policy], History]:
    policies, history = [], History()
    for index, spec in enumerate(apps):
        policy = app_policy(
            index,
            spec["step_back"],
            spec["interval"],
            spec.get("grain", "1m"),
            spec.get("declared"),
        )
        policies.append(policy)
        spacing = timedelta(seconds=spec.get("spacing", 60))
        point = 0
        for length, cpu, missing in spec["stretches"]:
            for _ in range(length):
                ts = START + spacing * point
                if ts >= START + timedelta(hours=HOURS):
                    break
                minute = (ts - START) // timedelta(minutes=1)
                if shared_spike and shared_spike[0] <= minute < shared_spike[0] + shared_spike[1]:
                    history.add(policy.name, "cpu", ts, 99.0)
                elif not missing:
                    history.add(policy.name, "cpu", ts, cpu)
                point += 1
        for minute in range(HOURS * 60):
            history.add(policy.name, "memory", START + timedelta(minutes=minute), spec["memory"])
        history.states[policy.name] = ResourceState(
            policy.target.resource_id, 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1", 1
        )
    return policies, history


def both_ways(
    policies: list[Policy], history: History, **options: Any
) -> tuple[Backtest, Backtest, list[dict[str, Any]], list[dict[str, Any]]]:
    end = START + timedelta(hours=HOURS)
    logs = MemoryAudit(), MemoryAudit()

    async def run() -> tuple[Backtest, Backtest]:
        fast = await replay(policies, history, START, end, audit=logs[0], **options)
        full = await replay(policies, history, START, end, audit=logs[1], quiet=False, **options)
        return fast, full

    fast, full = anyio.run(run)
    return fast, full, _lines(logs[0]), _lines(logs[1])


def _lines(audit: MemoryAudit) -> list[dict[str, Any]]:
    """The log without what differs run to run: the random pass id, and the hash over it."""
    drop = ("reconcile_id", "hash", "prev")
    return [{k: v for k, v in r.items() if k not in drop} for r in audit.records]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    apps=st.lists(app, min_size=1, max_size=6),
    shared_spike=st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(5, 120))),
    effects=st.booleans(),
    dry_run=st.booleans(),
)
def test_quiet_passes_change_no_decision_line_or_chart(
    apps: list[dict[str, Any]],
    shared_spike: tuple[int, int] | None,
    effects: bool,
    dry_run: bool,
) -> None:
    policies, history = build(apps, shared_spike)
    mode = Mode.DRY_RUN if dry_run else Mode.LIVE
    fast, full, fast_log, full_log = both_ways(policies, history, effects=effects, mode=mode)
    assert fast_log == full_log
    assert fast.targets == full.targets
    assert full.quiet_passes == 0
    assert fast.passes + fast.quiet_passes == full.passes


def test_a_steady_fleet_is_mostly_quiet_and_a_spike_runs_in_full() -> None:
    """The point of it: healthy stretches skip the pass; the spike, the scale-out, its
    verification and the step back still run through the reconciler."""
    spec = {
        "stretches": [(120, 30.0, False), (60, 95.0, False), (300, 30.0, False)],
        "memory": 40.0,
        "step_back": {"baseline": {"minReplicas": 1, "cpu": 0.5}, "stableFor": "30m"},
        "interval": None,
    }
    policies, history = build([spec, spec, spec], None)
    fast, full, fast_log, full_log = both_ways(policies, history)
    assert fast_log == full_log and fast.targets == full.targets
    actions = {a for t in fast.targets for a in t.summary.actions}
    assert actions == {"scaleOut", "scaleIn"}
    assert fast.quiet_passes > 10 * fast.passes  # 1,443 passes: most of them quiet


def test_fail_static_counts_quiet_targets_as_healthy_rounds() -> None:
    """Four of six apps breach together: fail static engages, and only the healthy
    rounds that include the quiet apps' passes release it — the same pass either way."""
    calm = {"stretches": [(480, 30.0, False)], "memory": 40.0, "step_back": None, "interval": None}
    policies, history = build([calm, calm], None)
    hot, hot_history = build([calm] * 4, (60, 90))
    for i, policy in enumerate(hot):
        renamed = app_policy(i + 2, None, None)
        policies.append(renamed)
        for (name, objective), points in hot_history.values.items():
            if name == policy.name:
                for ts, value in points.items():
                    history.add(renamed.name, objective, ts, value)
        history.states[renamed.name] = hot_history.states[policy.name]
    fast, full, fast_log, full_log = both_ways(policies, history)
    escalations = [r["reason"] for r in full_log if r["kind"] == "escalation"]
    assert any("fail static" in reason for reason in escalations)
    assert fast_log == full_log and fast.targets == full.targets
    assert fast.quiet_passes > 0


def test_cosmos_throttling_and_its_step_back_agree() -> None:
    """A 429 share the effect model answers with throughput, then lowered again."""
    data = {
        "apiVersion": "remediator/v1",
        "kind": "Policy",
        "metadata": {"name": "orders"},
        "target": {
            "type": "cosmosSqlContainer",
            "resourceId": "/subscriptions/s1/resourceGroups/rg/providers/"
            "Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/db/containers/orders",
        },
        "objectives": [
            {
                "name": "throttled",
                "signal": {
                    "metric": "TotalRequests",
                    "aggregation": "Count",
                    "filter": "StatusCode eq '429'",
                    "shareOf": {},
                },
                "comparison": "<",
                "threshold": 1,
                "for": "3m",
            },
            {
                "name": "ru",
                "signal": {"metric": "NormalizedRUConsumption", "aggregation": "Maximum"},
                "comparison": "<",
                "threshold": 90,
                "clear": 75,
                "for": "5m",
            },
        ],
        "remediation": [{"raiseThroughput": {"step": 400, "maxThroughput": 4000}}],
        "guards": {"cooldown": "10m", "bounds": {"maxThroughput": 4000}},
        "stepBack": {"baseline": {"throughput": 400}, "stableFor": "20m"},
    }
    policy = Policy.model_validate(data)
    history = History()
    for minute in range(HOURS * 60):
        busy = 90 <= minute < 200
        ts = START + timedelta(minutes=minute)
        history.add(policy.name, "throttled", ts, 30.0 if busy else 0.0)
        history.add(policy.name, "ru", ts, 100.0 if busy else 40.0)
    history.states[policy.name] = ResourceState(
        policy.target.resource_id, throughput=Throughput(400, None, 400, 10_000)
    )
    fast, full, fast_log, full_log = both_ways([policy], history)
    acted = {a for t in fast.targets for a in t.summary.actions}
    assert "raiseThroughput" in acted and "lowerThroughput" in acted
    assert fast_log == full_log and fast.targets == full.targets
    assert fast.quiet_passes > 0


def test_two_policies_on_one_resource_are_refused() -> None:
    """As the controller refuses to load them: the simulated target would be resized by
    both, and neither replay would be the controller's."""
    first = app_policy(0, None, None)
    second = Policy.model_validate(
        {**first.model_dump(by_alias=True, exclude_none=True), "metadata": {"name": "twin"}}
    )
    with pytest.raises(ValueError, match="both target"):
        anyio.run(lambda: replay([first, second], History(), START, START + timedelta(hours=1)))


def test_a_nan_in_the_history_is_a_gap() -> None:
    """A NaN or an infinity (a recording may carry one) is no value, for the evaluator
    and for a step back's projection alike."""
    history = History()
    history.add("p", "cpu", START, float("nan"))
    history.add("p", "cpu", START + timedelta(minutes=1), float("inf"))
    assert history.series("p", "cpu") == [(START, None), (START + timedelta(minutes=1), None)]


def test_a_nan_between_passes_changes_neither_way() -> None:
    """Found in review: a NaN the passes never see as newest (2 m passes, 1 m points)
    once made the full pass project a step back from 100 % and the quiet one not."""
    policy = Policy.model_validate(
        {
            "apiVersion": "remediator/v1",
            "kind": "Policy",
            "metadata": {"name": "orders"},
            "target": {
                "type": "cosmosSqlContainer",
                "resourceId": "/subscriptions/s1/resourceGroups/rg/providers/"
                "Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/db/containers/orders",
            },
            "objectives": [
                {
                    "name": "ru",
                    "signal": {"metric": "NormalizedRUConsumption", "aggregation": "Maximum"},
                    "comparison": "<",
                    "threshold": 90,
                    "for": "3m",
                }
            ],
            "remediation": [{"raiseThroughput": {"step": 400, "maxThroughput": 4000}}],
            "interval": "2m",
            "stepBack": {"baseline": {"throughput": 400}, "stableFor": "5m", "cooldown": "5m"},
        }
    )
    history = History()
    for minute in range(240):
        value = float("nan") if minute == 150 else 30.0 if minute < 60 else 45.0
        history.add(policy.name, "ru", START + timedelta(minutes=minute), value)
    history.states[policy.name] = ResourceState(
        policy.target.resource_id, throughput=Throughput(1000, None, 400, 10_000)
    )
    fast, full, fast_log, full_log = both_ways([policy], history)
    assert fast.quiet_passes > 0
    assert fast_log == full_log and fast.targets == full.targets
