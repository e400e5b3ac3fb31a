"""The status page as HTML, from a :class:`~controller.status.Status`.

One self-contained document: inline CSS, no script, no external asset (a sidecar's page
must work where nothing else is reachable), and a meta refresh instead of JavaScript.
:data:`CONTENT_SECURITY_POLICY` allows exactly that, should anything ever slip through.
Every value is escaped: policy text, reasons and errors come from data.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from controller.status import AuditLine, BudgetView, Status, TargetView

STATE_CLASS = {  # verdict and breaker states → a colour; anything else is plain
    "ok": "ok",
    "closed": "ok",
    "recovering": "warn",
    "pending": "warn",
    "half-open": "warn",
    "breach": "bad",
    "open": "bad",
    "unknown": "muted",
}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px}
header h1{margin:0 0 6px;font-size:18px}
header dl{display:flex;flex-wrap:wrap;gap:4px 24px;margin:0}
header dt{opacity:.7}header dd{margin:0 0 0 6px;font-weight:600}
main{padding:12px 20px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:0 0 14px;
  padding:10px 14px}
h2{margin:0;font-size:16px}
h3{margin:12px 0 4px;font-size:13px;text-transform:uppercase;color:#5a6275}
.resource{font-family:ui-monospace,monospace;font-size:12px;color:#5a6275;
  word-break:break-all;margin:2px 0 6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f4;vertical-align:top}
th{font-size:12px;color:#5a6275;font-weight:600}
.ok{color:#137333;font-weight:600}.warn{color:#a05a00;font-weight:600}
.bad{color:#b3261e;font-weight:600}.muted{color:#80869a}
.flag{display:inline-block;padding:0 6px;border-radius:3px;background:#b3261e;color:#fff}
"""

# What the page may load: its one inline stylesheet (by hash: no other style applies) and
# nothing else: no script, image, font, frame, form target or base URL; no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def render(status: Status) -> str:
    """The whole page."""
    return "".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{int(status.refresh)}">',
            "<title>Remediator status</title>",
            f"<style>{CSS}</style></head><body>",
            _header(status),
            "<main>",
            _policies(status),
            *(_target(t) for t in status.targets),
            _hidden(status.hidden),
            "" if status.targets else "<section><p>No policies loaded.</p></section>",
            _recent(status.recent),
            "</main></body></html>\n",
        ]
    )


def _policies(status: Status) -> str:
    """A line per policy: a selector policy can run thousands of targets."""
    if not status.policies:
        return ""
    rows = [
        (
            e(p.policy),
            e(p.targets),
            _count(p.breaching, "bad"),
            _count(p.unknown, "muted"),
            _count(p.failing, "bad"),
        )
        for p in status.policies
    ]
    head = ("policy", "targets", "in breach", "unknown", "failing passes")
    return f"<section><h2>Policies</h2>{_table(head, rows)}</section>"


def _count(value: int, css: str) -> str:
    return f'<span class="{css}">{value}</span>' if value else "0"


def _hidden(count: int) -> str:
    if not count:
        return ""
    return (
        f"<section><p>{count} more target(s), in less trouble than those above, are "
        "counted in the policies' line; the metrics have each policy's figures.</p></section>"
    )


def e(value: object) -> str:
    """Escape anything for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return e(f"{value:%Y-%m-%d %H:%M:%S}")
    return e(value.replace("T", " ").replace("Z", "").split(".")[0])


def _state(state: str) -> str:
    return f'<span class="{STATE_CLASS.get(state, "")}">{e(state)}</span>'


def _header(status: Status) -> str:
    if status.paused is not None:
        acting = f'<span class="flag">paused</span> {e(status.paused)}'
    elif status.pause_known:
        acting = "not paused"
    else:
        acting = "no pause seen in the last decisions"
    if status.ready is None:
        ready = "not checked"
    elif status.ready:
        ready = '<span class="ok">ready</span>'
    else:
        ready = '<span class="bad">not ready</span>: ' + e("; ".join(status.not_ready))
    items = (
        ("mode", e(status.mode)),
        ("role", e(status.role)),
        ("acting", acting),
        ("readiness", ready),
        ("as of", _when(status.now) + " UTC"),
    )
    cells = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items)
    return f"<header><h1>Remediator</h1><dl>{cells}</dl></header>"


def _target(t: TargetView) -> str:
    failing = (
        f' <span class="bad">{t.failures} failed pass(es) in a row</span>' if t.failures else ""
    )
    parts = [
        f'<section class="target" id="policy-{e(t.policy)}">',
        f'<h2>{e(t.policy)} <small class="muted">{e(t.kind)}</small></h2>',
        f'<p class="resource">{e(t.target)}</p>',
        f"<p>Last pass: {_when(t.last_pass)}{failing}. Now: {e(t.now_reason or '—')}</p>",
        _objectives(t),
        "<h3>Last decision</h3>",
        _decision(t.last_decision, "No decision in the audit log yet."),
        *(
            ("<h3>Last action</h3>", _decision(t.last_action, "No action yet."))
            if t.last_action != t.last_decision
            else ()
        ),
        "<h3>Breakers</h3>",
        _breakers(t),
        "<h3>Budgets</h3>",
        _budgets(t.budgets),
        "<h3>Pending</h3>",
        "<p>verification: ",
        e(t.verifying or "none"),
        "<br>approval: ",
        e(t.approval or "none"),
        "</p></section>",
    ]
    return "".join(parts)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _objectives(t: TargetView) -> str:
    rows = [
        (
            e(o.name),
            e(o.measures),
            "—" if o.value is None else e(f"{o.value:.4g}"),
            e(f"{o.comparison} {o.threshold:g}"),
            _state(o.state),
            e(o.reason),
            _when(o.as_of),
        )
        for o in t.objectives
    ]
    head = ("objective", "measures", "value", "holds while", "state", "why", "as of")
    return _table(head, rows)


def _decision(line: AuditLine | None, missing: str) -> str:
    if line is None:
        return f'<p class="muted">{e(missing)}</p>'
    rows = [
        (
            _when(line.ts),
            e(line.action or "—"),
            e(line.decision or "—"),
            e(line.guard or "—"),
            e(line.outcome or "—"),
            e(line.reason),
            e(line.because or "—"),
        )
    ]
    head = ("time", "action", "decision", "guard", "outcome", "reason", "objectives in breach")
    return _table(head, rows)


def _breakers(t: TargetView) -> str:
    if not t.breakers:
        return '<p class="muted">All closed (no action has failed or been judged yet).</p>'
    rows = [
        (e(b.action), _state(b.state), _when(b.opened_at), e(b.consecutive_bad)) for b in t.breakers
    ]
    return _table(("action", "state", "opened at", "bad in a row"), rows)


def _budgets(budgets: Sequence[BudgetView]) -> str:
    rows = [
        (
            e(b.what),
            f'<span class="{"bad" if b.used >= b.limit else ""}">{b.used} of {b.limit}</span>',
            e(f"in {b.window}"),
        )
        for b in budgets
    ]
    return _table(("budget", "used", "window"), rows)


def _recent(lines: Sequence[AuditLine]) -> str:
    rows = [
        (
            _when(line.ts),
            e(line.policy),
            e(line.kind),
            e(line.action or "—"),
            e(line.decision or "—"),
            e(line.outcome or "—"),
            e(line.reason),
        )
        for line in lines
    ]
    head = ("time", "policy", "kind", "action", "decision", "outcome", "reason")
    body = _table(head, rows) if rows else '<p class="muted">No audit lines yet.</p>'
    return f'<section id="recent"><h2>Recent audit lines</h2>{body}</section>'
