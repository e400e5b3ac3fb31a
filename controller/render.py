"""Text and JSON views of reconcile passes (``plan``, ``run --once``, the demo) and of audit
records (``audit show``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from controller.audit.log import WALL_TS
from controller.audit.show import record_time, written_time
from controller.loop import PassFailure
from controller.policy.loader import LoadedPolicy
from controller.reconcile import PassResult


def number(value: Any, places: int = 4) -> str:
    """A value as a person reads it: floats to ``places`` decimals without trailing
    zeros (``0.0162``, not ``0.016200000000000003``), anything else as it is."""
    if isinstance(value, float):
        text = f"{value:.{places}f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return str(value)


_LONG_FLOAT = re.compile(r"(?<![\d:.])-?\d+\.\d{7,}")  # not a time's microseconds


def tidy(text: str) -> str:
    """A message with every long decimal (float noise) cut to :func:`number`'s precision."""
    return _LONG_FLOAT.sub(lambda m: number(float(m.group())), text)


def params(values: dict[str, Any]) -> str:
    """``key=value`` pairs, numbers formatted by :func:`number`."""
    return ", ".join(f"{k}={number(v)}" for k, v in values.items()) or "-"


def pass_json(result: PassResult | PassFailure) -> dict[str, Any]:
    if isinstance(result, PassFailure):
        return {
            "policy": result.policy,
            "target": result.target,
            "verdict": None,
            "error": result.error,
        }
    decision = result.decision
    proposal = decision.proposal if decision else None
    return {
        "policy": result.policy,
        "target": result.target,
        "verdict": result.worst.value,
        "objectives": [v.as_dict() for v in result.verdicts],
        "action": proposal.action if proposal else None,
        "params": dict(proposal.params) if proposal else {},
        "decision": decision.kind.value if decision else None,
        "outcome": result.outcome.kind.value if result.outcome else None,
        "reason": result.reason,
    }


def plan_table(
    results: list[PassResult | PassFailure], counts: Mapping[str, int] | None = None
) -> str:
    """Targets × objectives × verdict × the action that would run, and why; then how many
    targets each policy has (a selector policy has one per resource it found; ``counts``
    names every policy, those with none too)."""
    header = ("POLICY", "TARGET", "OBJECTIVE", "VALUE", "VERDICT", "ACTION", "WHY")
    rows: list[tuple[str, ...]] = [header]
    per_policy: dict[str, int] = dict.fromkeys(counts or {}, 0)
    for result in results:
        per_policy[result.policy] = per_policy.get(result.policy, 0) + 1
        target = result.target.rsplit("/", 1)[-1] or "-"
        if isinstance(result, PassFailure):
            rows.append((result.policy, target, "-", "-", "error", "-", result.error))
            continue
        data = pass_json(result)
        action = data["action"] or "-"
        if data["action"] and data["decision"] == "deny":
            action = f"{action} (denied)"
        for v in result.verdicts:
            value = "-" if v.value is None else f"{v.value:.4g}"
            why = tidy(result.reason)
            rows.append((result.policy, target, v.objective, value, v.state.value, action, why))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]))
    by_policy = ", ".join(f"{policy} {n}" for policy, n in sorted(per_policy.items()))
    lines.append(f"targets by policy: {by_policy or 'none'}")
    return "\n".join(lines)


def pass_line(
    result: PassResult | PassFailure, now: datetime, since: datetime | None = None
) -> str:
    """One progress line: time, objective values, verdict, and any decision."""
    clock = now.strftime("%H:%M:%S")
    if since is not None:
        elapsed = int((now - since).total_seconds())
        clock = f"+{elapsed // 60:02d}:{elapsed % 60:02d}"
    if isinstance(result, PassFailure):
        return f"[{clock}] {result.policy}: pass failed: {result.error}"
    values = ", ".join(
        f"{v.objective}={'?' if v.value is None else f'{v.value:.1f}'} {v.state.value}"
        for v in result.verdicts
    )
    line = f"[{clock}] {result.policy}: {values}"
    decision = result.decision
    if decision is not None and decision.proposal is not None:
        proposal = decision.proposal
        change = ", ".join(
            f"{k} {number(proposal.before.get(k))}→{number(v)}"
            for k, v in proposal.after.items()
            if proposal.before.get(k) != v
        ) or params(dict(proposal.params))
        outcome = result.outcome.kind.value if result.outcome else decision.kind.value
        line += f" → {proposal.action} ({change}): {outcome}"
        if decision.kind.value == "deny":
            line += f" [{tidy(decision.reason)}]"
    for verdict in result.failed_signals:
        line += f" [{verdict.objective}: signal failed: {verdict.error}]"
    return line


def audit_line(record: dict[str, Any]) -> str:
    """One audit record on one line: when, what kind, which policy, the verdict, the
    action, the decision (and the guard that denied), the outcome, and why."""
    ts = record_time(record)
    when = _utc(ts) if ts else str(record.get("ts"))
    written = written_time(record) if WALL_TS in record else None
    if written is not None:  # a scenario clock: when it was written, then scenario time
        when = f"{_utc(written)} (scenario {when})"
    decision = record.get("decision") or "-"
    if record.get("guard"):
        decision = f"{decision}:{record['guard']}"
    outcome = record.get("outcome") or record.get("efficacy") or "-"
    cells = (
        f"#{record.get('seq', '?')}",
        when,
        f"{record.get('kind', 'decision'):<12}",
        str(record.get("policy", "-")),
        f"{record.get('verdict') or '-':<10}",
        record.get("action") or "-",
        decision,
        outcome,
        tidy(str(record.get("reason", ""))),
    )
    return "  ".join(cells)


def _utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def targets_table(
    loaded: Sequence[LoadedPolicy], targets: Sequence[LoadedPolicy], problems: Mapping[str, str]
) -> str:
    """Each policy with what it covers now: its targets (resource, region), a count, and
    why a selector's newest answer was not believed."""
    lines = []
    for item in loaded:
        policy = item.policy
        mine = [t for t in targets if t.policy.name == policy.name]
        how = "selector" if policy.target.is_selector else "resourceId"
        lines.append(f"{policy.name} ({how}, {item.source}:{item.line}): {len(mine)} target(s)")
        if policy.name in problems:
            lines.append(f"  ! {problems[policy.name]}")
        for target in mine:
            region = target.policy.target.region or "-"
            lines.append(f"  {target.policy.target.resource_id}  {region}")
    return "\n".join(lines)
