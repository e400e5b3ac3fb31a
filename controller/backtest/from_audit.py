"""The backtest report from an audit log: what Remediator did — or, in dry-run, would
have done — and why, over the period the log covers.

Every decision line becomes a marker (applied, would have run in dry-run, denied by a
guard, pending approval, escalated); a dry-run's proposal repeated while nothing changed
counts once. The objectives' values come from the signal history when a ``History`` is
given (``remediator report --config``: read from the backends over the log's period);
otherwise from the values the log itself recorded with each line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.backtest.action_cost import cost_of_markers
from controller.backtest.engine import (
    exceeded,
    markers_from,
    proposals,
    summarize,
    union,
    warnings_of,
    windows,
)
from controller.backtest.history import History
from controller.backtest.model import Backtest, ObjectiveTrace, Point, TargetTrace
from controller.backtest.prices import Prices
from controller.backtest.saturation import saturation
from controller.model import VerdictState
from controller.policy.schema import Policy


def from_audit(
    records: Sequence[Mapping[str, Any]],
    label: str,
    policies: Mapping[str, Policy] | None = None,
    history: History | None = None,
    prices: Prices | None = None,
) -> Backtest:
    """One trace per policy found in ``records`` (in the order first seen); actions
    applied are priced from the sizes they recorded, and so are the distinct proposals
    a dry-run would have run (as if each had been applied when first proposed)."""
    table = prices or Prices()
    stamped = [(_ts(r), dict(r)) for r in records if r.get("ts") and r.get("policy")]
    if not stamped:
        raise ValueError("the audit log has no records to report on")
    start = min(ts for ts, _ in stamped)
    end = max(ts for ts, _ in stamped)
    names: list[str] = []
    for _, record in stamped:
        if record["policy"] not in names:
            names.append(str(record["policy"]))
    traces = []
    for name in names:
        mine = [(ts, r) for ts, r in stamped if r["policy"] == name]
        policy = (policies or {}).get(name)
        objectives = tuple(_objectives(name, mine, end, policy, history))
        markers = tuple(markers_from(name, [r for _, r in mine]))
        stretches = union(w for o in objectives for w in o.exceeded)
        target = str(mine[0][1].get("target", ""))
        applied = [m for m in markers if m.kind == "acted"]
        cost = cost_of_markers(applied, end, table)
        would_cost = cost_of_markers(proposals(markers), end, table)
        summary = summarize(markers, stretches, cost, would_cost, warnings_of(objectives))
        traces.append(TargetTrace(name, target, objectives, markers, summary))
    modes = {str(r["mode"]) for _, r in stamped if r.get("mode")}
    mode = modes.pop() if len(modes) == 1 else "mixed" if modes else "live"
    return Backtest(label, start, end, False, tuple(traces), mode=mode, source="audit")


def _objectives(
    name: str,
    mine: Sequence[tuple[datetime, Mapping[str, Any]]],
    end: datetime,
    policy: Policy | None,
    history: History | None,
) -> list[ObjectiveTrace]:
    seen: dict[str, list[tuple[datetime, Mapping[str, Any]]]] = {}
    for ts, record in mine:
        for verdict in record.get("verdicts") or []:
            seen.setdefault(str(verdict["objective"]), []).append((ts, verdict))
    traces = []
    for objective, verdicts in seen.items():
        declared = (
            next((o for o in policy.objectives if o.name == objective), None) if policy else None
        )
        threshold = float(verdicts[-1][1]["threshold"])
        points = [Point(ts, v.get("value")) for ts, v in verdicts]
        if history is not None and (name, objective) in history.values:
            points = [Point(ts, value) for ts, value in history.series(name, objective)]
        states = [(ts, VerdictState(v["state"])) for ts, v in verdicts]
        measures = declared.measures if declared else objective
        comparison = declared.comparison if declared else "<"
        line = declared.threshold if declared else threshold
        over = tuple(exceeded(states, end))
        traces.append(
            ObjectiveTrace(
                objective,
                measures,
                comparison,
                line,
                declared.clear_line if declared else threshold,
                tuple(points),
                tuple(windows(states, end)),
                over,
                saturation(measures, comparison, line, points, over),
            )
        )
    return traces


def _ts(record: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
