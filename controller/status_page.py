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

from controller.status import (
    ApprovalView,
    AuditLine,
    BudgetView,
    PolicyView,
    Status,
    TargetView,
    TrackView,
)
from controller.track import Point

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
.summary{display:flex;flex-wrap:wrap;gap:6px 22px;margin:6px 0 10px;padding:0}
.summary li{list-style:none}.summary b{font-size:18px;margin-right:4px}
tr.total td{font-weight:600;border-top:2px solid #dde1e8}
.cause{background:#fdf3e6;border-left:3px solid #a05a00;padding:4px 8px;margin:6px 0}
.approval{background:#eef3fd;border-left:3px solid #1a56c4;padding:4px 8px;margin:6px 0}
.approval code,.approval kbd{font-family:ui-monospace,monospace;font-size:12px}
.track{display:block;width:100%;max-width:720px;height:auto;margin:4px 0}
.track .frame{fill:#fbfcfd;stroke:#dde1e8}.track text{font-size:11px;fill:#5a6275}
.track .limit{stroke:#b3261e;stroke-dasharray:4 3;fill:none}
.track .o0{stroke:#2563eb}.track .o1{stroke:#9333ea}.track .o2{stroke:#0d9488}
.track .o0,.track .o1,.track .o2{fill:none;stroke-width:2}
.track .cap{stroke:#d97706;stroke-width:2;fill:none}
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
            _fleet(status),
            *(_target(t) for t in status.targets),
            _hidden(status.hidden),
            "" if status.targets else "<section><p>No policies loaded.</p></section>",
            _recent(status.recent),
            "</main></body></html>\n",
        ]
    )


def _fleet(status: Status) -> str:
    """The whole estate first, then a line per policy: a selector policy can run
    thousands of targets, of which only the most troubled are shown below."""
    total = status.fleet
    if total is None or not status.policies:
        return ""
    figures = (
        (total.targets, "targets", ""),
        (total.breaching, "in breach", "bad"),
        (total.acting, "acting", "warn"),
        (total.unknown, "unknown", "muted"),
        (total.failing, "failing passes", "bad"),
        (total.breakers_open, "open breakers", "bad"),
        (total.approvals, "pending approvals", "warn"),
    )
    summary = "".join(
        f'<li><b class="{css if value else ""}">{value}</b>{label}</li>'
        for value, label, css in figures
    )
    summary += f"<li><b>{e(status.mode)}</b>mode</li>"
    rows = [_policy_row(p) for p in status.policies]
    head = (
        "policy",
        "targets",
        "in breach",
        "acting",
        "unknown",
        "failing passes",
        "open breakers",
        "pending approvals",
    )
    table = _table(head, rows)
    if len(status.policies) > 1:
        cells = "".join(f"<td>{c}</td>" for c in _policy_row(total))
        table = table.replace("</tbody>", f'<tr class="total">{cells}</tr></tbody>')
    return f'<section id="fleet"><h2>Fleet</h2><ul class="summary">{summary}</ul>{table}</section>'


def _policy_row(p: PolicyView) -> tuple[str, ...]:
    return (
        e(p.policy),
        e(p.targets),
        _count(p.breaching, "bad"),
        _count(p.acting, "warn"),
        _count(p.unknown, "muted"),
        _count(p.failing, "bad"),
        _count(p.breakers_open, "bad"),
        _count(p.approvals, "warn"),
    )


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
        ("kill switch", acting),
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
        *(
            f'<p class="cause"><span class="muted">unknown</span> {e(cause)}</p>'
            for cause in t.unknown
        ),
        _capacity(t),
        _track(t.track),
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
        "</p>",
        _approval(t.approval),
        "</section>",
    ]
    return "".join(parts)


def _capacity(t: TargetView) -> str:
    if t.capacity is None:
        now = '<span class="muted">not read yet (read on a breach or a step back)</span>'
    else:
        now = f'{e(t.capacity)} <small class="muted">read {_when(t.capacity_at)}</small>'
    line = f"<p>Capacity: {now}"
    if t.last_action is not None and t.last_action.change:
        action = t.last_action
        line += (
            f"<br>Last action: {e(action.action or '—')} {e(action.change)} "
            f"({e(action.outcome or '—')}, {_when(action.ts)})"
        )
    return line + "</p>"


def _approval(a: ApprovalView | None) -> str:
    if a is None:
        return "<p>approval: none</p>"
    if a.answer is not None:
        status = f"answered: {e(a.answer)}; applied on the next pass"
    elif a.expired:
        status = (
            f'<span class="bad">expired at {_when(a.expires_at)} UTC</span>; '
            "asked again if still needed"
        )
    else:
        status = f"expires {_when(a.expires_at)} UTC"
    return (
        f'<div class="approval"><p><b>Approval {e(a.id)}</b>: {e(a.action)} '
        f"{e(a.change)}<br>requested {_when(a.asked_at)} UTC; {status}<br>"
        f"<kbd>remediator approve {e(a.id)} --config SETTINGS</kbd> or "
        f"<kbd>remediator reject {e(a.id)} --config SETTINGS</kbd> "
        '<span class="muted">(<code>remediator approvals</code> lists them)</span></p></div>'
    )


COLOURS = ("blue", "purple", "teal")  # the objectives' lines: .o0, .o1, .o2 in CSS
W, H = 720, 150  # the track's drawing, in SVG units (it scales to the page)
LEFT, RIGHT, TOP, BOTTOM = 44, 56, 10, 22


def _track(track: TrackView | None) -> str:
    """Each objective's value as a share of its threshold (the dashed line is the
    threshold itself), and the capacity as a step line on its own scale: inline SVG, no
    script and no style attribute, so the page's policy allows it as it is."""
    if track is None or len(track.points) < 2:
        return ""
    points = track.points
    t0, t1 = points[0].ts.timestamp(), points[-1].ts.timestamp()
    span = max(t1 - t0, 1.0)
    width, height = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(p: Point) -> float:
        return LEFT + (p.ts.timestamp() - t0) / span * width

    ratios = [
        [None if v is None or not threshold else v / threshold for v in _values(points, i)]
        for i, (_, _, threshold) in enumerate(track.objectives[:3])
    ]
    top = max([1.5, *(r * 1.1 for line in ratios for r in line if r is not None)])

    def y(ratio: float) -> float:
        return TOP + height - min(ratio, top) / top * height

    shapes = [f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{width}" height="{height}"/>']
    shapes.append(
        f'<line class="limit" x1="{LEFT}" x2="{LEFT + width}" y1="{y(1):.1f}" y2="{y(1):.1f}"/>'
    )
    shapes.append(f'<text x="{LEFT - 4}" y="{y(1) + 4:.1f}" text-anchor="end">limit</text>')
    for i, line in enumerate(ratios):
        for run in _runs([(x(p), r) for p, r in zip(points, line, strict=True)]):
            coords = " ".join(f"{px:.1f},{y(r):.1f}" for px, r in run)
            shapes.append(f'<polyline class="o{i}" points="{coords}"/>')
    sizes = [p.capacity for p in points if p.capacity is not None]
    if sizes:
        ceiling = max(sizes) * 1.25 or 1.0
        steps: list[tuple[float, float]] = []
        for p in points:
            if p.capacity is None:
                continue
            level = TOP + height - p.capacity / ceiling * height
            if steps:  # a step: along at the old level, then up or down to the new
                steps.append((x(p), steps[-1][1]))
            steps.append((x(p), level))
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in steps)
        shapes.append(f'<polyline class="cap" points="{coords}"/>')
        end = f'x="{LEFT + width + 4}" y="{steps[-1][1] + 4:.1f}"'
        shapes.append(f"<text {end}>{e(_num(sizes[-1]))}</text>")
    shapes.append(f'<text x="{LEFT}" y="{H - 6}">{_when(points[0].ts)}</text>')
    shapes.append(
        f'<text x="{LEFT + width}" y="{H - 6}" text-anchor="end">{_when(points[-1].ts)}</text>'
    )
    named = track.objectives[:3]
    label = "; ".join(
        f"{name} ({COLOURS[i]}) as a share of its threshold ({comparison} {threshold:g}, "
        "the dashed line)"
        for i, (name, comparison, threshold) in enumerate(named)
    )
    label += f"; {track.unit} (orange) on its own scale, over the last {len(points)} passes"
    return (
        f'<svg class="track" viewBox="0 0 {W} {H}" role="img" aria-label="{e(label)}">'
        f"<title>{e(label)}</title>{''.join(shapes)}</svg>"
        f'<p class="muted">Track: {e(label)}.</p>'
    )


def _values(points: Sequence[Point], index: int) -> list[float | None]:
    return [p.values[index] if index < len(p.values) else None for p in points]


def _runs(
    coords: Sequence[tuple[float, float | None]],
) -> list[list[tuple[float, float]]]:
    """The stretches with a value: a pass that could not tell leaves a gap."""
    runs: list[list[tuple[float, float]]] = [[]]
    for px, value in coords:
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((px, value))
    return [run for run in runs if len(run) > 1 or (run and len(coords) == 1)]


def _num(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


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
            e(line.change or "—"),
            e(line.reason),
            e(line.because or "—"),
        )
    ]
    head = (
        "time",
        "action",
        "decision",
        "guard",
        "outcome",
        "before → after",
        "reason",
        "objectives in breach",
    )
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
