"""The Grafana dashboard says what the metrics mean: every panel has a unit and
thresholds, every state has its name and colour (a breach is never green), a `policy`
variable filters every per-policy series, actions are annotations, and every expression
is one a real Prometheus accepts and answers."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import prometheus
from tests.prometheus import POLL, Stack

prometheus_stack = prometheus.prometheus_stack  # the session's Prometheus and exporter
ROOT = Path(__file__).parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "remediator-dashboard.json").read_text())
PANELS: list[dict[str, Any]] = DASHBOARD["panels"]
# metrics with a policy label (controller/telemetry.py): the variable must filter them
PER_POLICY = (
    "objective_state",
    "breaker_state",
    "paused",
    "escalations_total",
    "loop_lag_seconds",
    "reconcile_passes_total",
    "actions_total",
    "decisions_total",
    "action_efficacy_total",
)
COLOURS = {"ok": "green", "breach": "red", "open": "red", "closed": "green"}


def documented_states(metric: str) -> dict[int, str]:
    """`0 ok, 1 pending, …` from the metric's row in docs/operations.md."""
    docs = (ROOT / "docs" / "operations.md").read_text()
    [row] = [line for line in docs.splitlines() if line.startswith(f"| `{metric}` |")]
    meaning = row.rstrip(" |").rsplit("|", 1)[-1]
    return {int(v): name for v, name in re.findall(r"(-?\d+) ([a-z-]+)", meaning)}


def mapped(mappings: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    return {
        int(value): (option["text"], option["color"])
        for m in mappings
        if m["type"] == "value"
        for value, option in m["options"].items()
    }


def colour_at(thresholds: dict[str, Any], value: float) -> str:
    colour = thresholds["steps"][0]["color"]
    for step in thresholds["steps"][1:]:
        if value >= step["value"]:
            colour = step["color"]
    return str(colour)


def expressions() -> list[tuple[str, str]]:
    found = [(p["title"], t["expr"]) for p in PANELS for t in p["targets"]]
    found += [(a["name"], a["expr"]) for a in DASHBOARD["annotations"]["list"] if "expr" in a]
    return found


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_every_panel_has_a_unit_and_thresholds(panel: dict[str, Any]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"], panel["title"]
    steps = defaults["thresholds"]["steps"]
    assert steps and steps[0]["value"] is None
    assert [s["value"] for s in steps[1:]] == sorted(s["value"] for s in steps[1:])
    if panel["type"] == "state-timeline":
        assert defaults["mappings"], f"{panel['title']}: a state with no name"


@pytest.mark.parametrize(
    ("metric", "title"),
    [("objective_state", "Objective state"), ("breaker_state", "Circuit breakers")],
)
def test_states_have_the_documented_names_and_colours(metric: str, title: str) -> None:
    [panel] = [p for p in PANELS if p["title"] == title]
    defaults = panel["fieldConfig"]["defaults"]
    names = mapped(defaults["mappings"])
    documented = documented_states(metric)
    assert {v: text for v, (text, _) in names.items()} == documented
    for value, (text, colour) in names.items():
        assert colour_at(defaults["thresholds"], value) == colour  # mapping and thresholds agree
        if text in COLOURS:
            assert colour == COLOURS[text], f"{text} shown {colour}"


def test_leader_and_pause_each_say_what_their_1_means() -> None:
    [panel] = [p for p in PANELS if p["title"] == "Leader and kill switch"]
    refs = {t["refId"]: t["expr"] for t in panel["targets"]}
    assert refs["A"] == "remediator_leader" and refs["B"].startswith("remediator_paused")
    assert mapped(panel["fieldConfig"]["defaults"]["mappings"])[1] == ("may act", "green")
    [override] = panel["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byFrameRefID", "options": "B"}
    props = {p["id"]: p["value"] for p in override["properties"]}
    assert mapped(props["mappings"])[1][1] == "red" == colour_at(props["thresholds"], 1)


def test_a_policy_variable_filters_every_per_policy_series() -> None:
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "policy"]
    assert "label_values(" in variable["definition"] and ", policy)" in variable["definition"]
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    for where, expr in expressions():
        for metric in PER_POLICY:
            if re.search(rf"remediator_{metric}\b", expr):
                assert 'policy=~"$policy"' in expr, f"{where}: {expr}"


def test_actions_are_annotations() -> None:
    shown = [a for a in DASHBOARD["annotations"]["list"] if a.get("enable") and "expr" in a]
    [applied] = [a for a in shown if "remediator_actions_total" in a["expr"]]
    assert 'outcome=~"succeeded|failed"' in applied["expr"]
    assert "{{action}}" in applied["titleFormat"]


def query(stack: Stack, expr: str) -> dict[str, Any]:
    concrete = expr.replace("$policy", ".*")
    params = urllib.parse.urlencode({"query": concrete, "time": f"{time.time():.3f}"})
    try:
        with urllib.request.urlopen(f"{stack.url}/api/v1/query?{params}", timeout=5) as answer:
            body: dict[str, Any] = json.loads(answer.read())
    except urllib.error.HTTPError as refused:  # a bad expression: 400 with the reason
        body = json.loads(refused.read())
    return body


SERIES = {
    'remediator_objective_state{policy="api",objective="cpu"}': 3,
    'remediator_breaker_state{policy="api",action="scaleOut"}': 2,
    "remediator_leader": 1,
    'remediator_paused{policy="api"}': 0,
    'remediator_budget_remaining{scope="target",name="api"}': 2,
    'remediator_actions_total{policy="api",action="scaleOut",outcome="succeeded"}': 1,
    'remediator_decisions_total{policy="api",action="scaleOut",decision="deny",guard="cooldown"}': 3,
    'remediator_action_efficacy_total{policy="api",action="scaleOut",efficacy="improved"}': 1,
    'remediator_escalations_total{policy="api",reason="approval"}': 1,
    'remediator_reconcile_duration_seconds_bucket{le="0.5"}': 4,
    'remediator_reconcile_duration_seconds_bucket{le="+Inf"}': 5,
    'remediator_loop_lag_seconds{policy="api"}': 0.2,
    'remediator_reconcile_passes_total{policy="api",result="ok"}': 5,
    'remediator_observations_total{source="azureMonitor",quality="good"}': 5,
    'remediator_azure_requests_total{operation="read",status="200"}': 9,
    "remediator_arm_writes_remaining": 1199,
    'remediator_audit_write_duration_seconds_bucket{le="0.01"}': 7,
    'remediator_audit_write_duration_seconds_bucket{le="+Inf"}': 7,
    "remediator_audit_write_failures_total": 0,
    'remediator_policy_reloads_total{result="applied"}': 1,
}


def test_prometheus_accepts_and_answers_every_expression(prometheus_stack: Stack) -> None:
    """Each panel's query, with every series present, answers with data; the annotations'
    (which keep only changes) are valid PromQL."""
    prometheus_stack.exporter.values.update(SERIES)
    deadline = time.monotonic() + 30
    while True:  # until two scrapes hold the series (rates and increases need two)
        answer = query(prometheus_stack, "count_over_time(remediator_leader[1m])")
        result = answer.get("data", {}).get("result", [])
        if result and float(result[0]["value"][1]) >= 2:
            break
        assert time.monotonic() < deadline, "Prometheus did not scrape the exporter"
        time.sleep(POLL)
    panels = {(p["title"], t["expr"]) for p in PANELS for t in p["targets"]}
    for where, expr in expressions():
        body = query(prometheus_stack, expr)
        assert body["status"] == "success", f"{where}: {expr}: {body.get('error')}"
        if (where, expr) in panels:
            assert body["data"]["result"], f"{where}: {expr} found no series"
