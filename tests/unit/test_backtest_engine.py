"""Backtests: a recorded series with known breaches gives the expected actions at the
expected simulated times, the expected denials, and costs; recordings round-trip."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.backtest.engine import replay
from controller.backtest.history import (
    History,
    RecordingError,
    read_recording,
    write_recording,
)
from controller.model import ContainerSize, Mode, ResourceState, Throughput
from tests.conftest import START, make_policy

pytestmark = pytest.mark.anyio
POLICY = make_policy()  # cpu < 70 for 3 min; scaleOut then scaleUp; cooldown 5 min


def spike() -> History:
    """CPU 40 % for ten minutes, then 100 % (what a single replica saw) for two hours."""
    history = History()
    for minute in range(120):
        value = 40.0 if minute < 10 else 100.0
        history.add(POLICY.name, "cpu", START + timedelta(minutes=minute), value)
    history.states[POLICY.name] = ResourceState(
        POLICY.target.resource_id, 1, 10, (ContainerSize("api", 0.5, "1Gi"),), "r1", 1
    )
    return history


async def test_closed_loop_one_scale_out_fixes_it_and_costs_its_replica_hours() -> None:
    """With effects: the breach is judged at 00:13 (three full buckets from 00:10, pending
    from 00:11) and scaled out at once; two replicas halve CPU to 50 %, so nothing else
    runs. The first action comes 2 minutes into the breach: its `for` window counts."""
    result = await replay([POLICY], spike(), START, START + timedelta(minutes=90))
    [target] = result.targets
    acted = [m for m in target.markers if m.kind == "acted"]
    assert [(m.ts - START, m.action, dict(m.params)) for m in acted] == [
        (timedelta(minutes=13), "scaleOut", {"minReplicas": 2, "maxReplicas": 10})
    ]
    assert target.summary.actions == {"scaleOut": 1}
    assert target.summary.first_action_minutes == 2.0
    cpu = target.objectives[0]
    assert max(v or 0 for ts, v in cpu.points if ts > START + timedelta(minutes=16)) == 50.0
    # one extra 0.5-core replica from 00:13 to 01:30: 0.5 × 77/60 vCPU-hours
    assert target.summary.cost.units["vcpu-hours"] == pytest.approx(0.5 * 77 / 60)
    assert target.summary.cost.total > 0


async def test_open_loop_shows_the_cooldown_holding_and_the_ladder_climbing() -> None:
    """Without effects the spike never ends: scaleOut, four cooldown denials, then the
    rung judged not to help gives way to scaleUp; the breach lasts to the end, and is
    counted from the first pass of its `for` window."""
    result = await replay([POLICY], spike(), START, START + timedelta(minutes=90), effects=False)
    [target] = result.targets
    acted = [(m.ts - START, m.action) for m in target.markers if m.kind == "acted"]
    assert acted[:2] == [
        (timedelta(minutes=13), "scaleOut"),
        (timedelta(minutes=18), "scaleUp"),
    ]
    denials = [m for m in target.markers if m.kind == "denied"]
    assert {m.guard for m in denials} == {"cooldown"}
    assert denials[0].ts - START == timedelta(minutes=14)
    assert target.summary.breach_minutes == 79.0  # from 00:11, its first pending pass
    assert target.objectives[0].breaches == ((START + timedelta(minutes=13), result.end),)
    assert target.objectives[0].exceeded == ((START + timedelta(minutes=11), result.end),)


async def test_dry_run_replay_marks_would_run_and_acts_on_nothing() -> None:
    result = await replay(
        [POLICY], spike(), START, START + timedelta(minutes=30), effects=True, mode=Mode.DRY_RUN
    )
    [target] = result.targets
    assert result.mode == "dry-run"
    assert [m.action for m in target.markers if m.kind == "would-run"][:1] == ["scaleOut"]
    assert not [m for m in target.markers if m.kind == "acted"]  # nothing was applied
    assert target.summary.actions == {}
    # the proposal repeated while nothing changed is one proposal
    assert target.summary.would_run == {"scaleOut": 1}
    assert target.summary.cost.units.get("vcpu-hours", 0.0) == 0.0  # nothing was changed
    assert target.summary.would_cost is not None and target.summary.would_cost.total > 0


async def test_a_raise_moves_the_429_share() -> None:
    """A 20 % 429 share at 4,000 RU/s means 5,000 RU/s of demand: 5,000 RU/s ends it."""
    db = (
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
        "/Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/db"
    )
    policy = make_policy(
        target={"type": "cosmosSqlDatabase", "resourceId": db},
        objectives=[
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
            }
        ],
        remediation=[{"raiseThroughput": {"step": "25%", "maxThroughput": 10000}}],
    )
    history = History()
    for minute in range(60):
        history.add(policy.name, "throttled", START + timedelta(minutes=minute), 20.0)
    history.states[policy.name] = ResourceState(db, throughput=Throughput(4000, None, 400, 10000))
    result = await replay([policy], history, START, START + timedelta(minutes=40))
    [target] = result.targets
    assert [dict(m.params) for m in target.markers if m.kind == "acted"] == [{"throughput": 5000}]
    late = [v for ts, v in target.objectives[0].points if ts > START + timedelta(minutes=10)]
    assert late and max(v or 0 for v in late[-5:]) == 0.0
    assert target.summary.cost.units["ru-hours"] > 0


async def test_a_restart_does_what_the_policy_declares_and_nothing_otherwise() -> None:
    """A leak: memory climbs a point a minute from 60 %. With a declared effect the
    restart brings it back to 30 % for 20 minutes; without one a restart changes
    nothing, and the ladder is judged not to help."""
    leak = {
        "objectives": [
            {
                "name": "memory",
                "signal": {"metric": "MemoryPercentage", "aggregation": "Average"},
                "comparison": "<",
                "threshold": 80,
                "for": "3m",
            }
        ],
        "remediation": [{"restartRevision": {}}],
    }
    declared = make_policy(
        **leak,
        backtest={
            "effects": [
                {"action": "restartRevision", "objective": "memory", "value": 30, "for": "20m"}
            ]
        },
    )
    history = History()
    for minute in range(90):
        history.add(declared.name, "memory", START + timedelta(minutes=minute), 60.0 + minute)
    end = START + timedelta(minutes=60)
    result = await replay([declared], history, START, end)
    [target] = result.targets
    restarts = [m.ts for m in target.markers if m.kind == "acted"]
    assert restarts[0] - START == timedelta(minutes=23)  # 80 % from 00:20: three buckets
    after = [
        v
        for ts, v in target.objectives[0].points
        if restarts[0] < ts <= restarts[0] + timedelta(minutes=20)
    ]
    assert after and set(after[1:]) == {30.0}  # the first pass after still reads 00:23
    plain = await replay([make_policy(**leak)], history, START, end)
    [untouched] = plain.targets
    assert all(v is None or v >= 80 for ts, v in untouched.objectives[0].points if ts > restarts[0])


def test_declared_effects_are_checked_against_the_policy() -> None:
    """A declared effect names an action the policy runs (a rung, or a step back) and
    one of its objectives, and says one thing: replace or multiply."""
    effect = {"action": "scaleOut", "objective": "cpu", "value": 30}
    assert make_policy(backtest={"effects": [effect]}).backtest.effects[0].value == 30
    for wrong, message in (
        ({**effect, "action": "restartRevision"}, "never runs restartRevision"),
        ({**effect, "action": "raiseThroughput"}, "never runs raiseThroughput"),
        ({**effect, "objective": "memory"}, "no objective named 'memory'"),
        ({**effect, "factor": 0.5}, "exactly one of value"),
    ):
        with pytest.raises(ValueError, match=message):
            make_policy(backtest={"effects": [wrong]})


def test_a_recording_round_trips_and_a_bad_one_names_its_line(tmp_path: Path) -> None:
    history = spike()
    history.add(POLICY.name, "cpu", START + timedelta(minutes=200), None)
    path = tmp_path / "rec.jsonl"
    write_recording(path, history, START)
    again = read_recording(path)
    assert again.values == history.values
    assert again.states[POLICY.name].containers == history.states[POLICY.name].containers
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"value": 40.0', '"value": "high"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match=r"rec\.jsonl:4: value must be a number"):
        read_recording(path)
