"""A backtest as one self-contained HTML file: charts as inline SVG, tables, no script.

:func:`render` takes one :class:`~controller.backtest.model.Backtest`, or two replays of
the same history under different policy sets, shown side by side: each target's charts
in paired columns (one value scale per objective across the pair, so they compare by
eye) and every summary number with its difference (second − first).

Like the status page it needs nothing beyond itself to open: inline CSS, SVG drawn
here, no external asset and no link off the page; the browser's own tooltips (SVG
``<title>``) tell what each marker was. Every text from data is escaped. The output is
a function of the input alone (no "generated at"), so tests and diffs can compare it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from controller.backtest.model import (
    Backtest,
    Marker,
    MarkerKind,
    ObjectiveTrace,
    TargetSummary,
    TargetTrace,
    TimedValue,
)
from controller.backtest.prices import Prices, unit_price

# Chart geometry, in SVG user units (the viewBox; the page scales it to its column).
WIDTH = 720
HEIGHT = 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 50  # margins: value labels left, time axis below
LANE = 12  # the markers' row, this far below the plot

SERIES = "#1f5fbf"
THRESHOLD = "#b3261e"
CLEAR = "#137333"
BREACH = "#b3261e"
MARKERS: dict[MarkerKind, tuple[str, str]] = {  # kind → (colour, what the legend says)
    "acted": ("#137333", "action applied"),
    "would-run": ("#5a6275", "would have run (dry-run: not applied)"),
    "denied": ("#b3261e", "denied by a guard"),
    "pending-approval": ("#a05a00", "waiting for approval"),
    "escalation": ("#6a1b9a", "escalated"),
}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px}
header h1{margin:0 0 6px;font-size:18px}
header table{width:auto}
header th,header td{border:0;padding:1px 24px 1px 0;color:#fff}
header th{opacity:.7;font-weight:400}header td{font-weight:600}
.set{font-family:ui-monospace,monospace}
main{padding:12px 20px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:0 0 14px;
  padding:10px 14px}
h2{margin:0;font-size:16px}
h3{margin:12px 0 4px;font-size:13px;text-transform:uppercase;color:#5a6275}
h4{margin:8px 0 2px;font-size:13px}
.resource{font-family:ui-monospace,monospace;font-size:12px;color:#5a6275;
  word-break:break-all;margin:2px 0 6px}
.charts{display:grid;gap:4px 18px}
.charts.one{grid-template-columns:repeat(auto-fill,minmax(460px,1fr))}
.charts.two{grid-template-columns:repeat(2,minmax(0,1fr))}
.charts>div{min-width:0}
h3.column{text-transform:none;color:#1d2330}
.chart{width:100%;height:auto;display:block}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:12px;color:#5a6275}
.legend svg{vertical-align:middle}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f4;vertical-align:top}
th{font-size:12px;color:#5a6275;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.summary{width:auto;min-width:min(100%,560px)}
.better{color:#137333;font-weight:600}.worse{color:#b3261e;font-weight:600}
.muted{color:#80869a}
.warning{background:#fff4e0;border-left:3px solid #c26a00;color:#6b3d00;font-size:12px;
  margin:4px 0;padding:4px 8px}
details{margin:6px 0}summary{cursor:pointer;color:#5a6275}
"""


def render(
    backtests: Sequence[Backtest],
    title: str = "Remediator backtest",
    *,
    prices: Prices | None = None,
) -> str:
    """The whole report for one backtest, or two side by side (first, second).

    With ``prices`` (the table the costs were computed with) the cost rows also show
    each unit's price and mark the units it has no price for.
    """
    if not 1 <= len(backtests) <= 2:
        raise ValueError(f"a report shows one backtest or compares two, not {len(backtests)}")
    runs = tuple(backtests)
    return "".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>{e(title)}</title>",
            f"<style>{CSS}</style></head><body>",
            _header(runs, title),
            "<main>",
            _overall(runs, prices),
            *(_target(runs, key, prices) for key in _target_keys(runs)),
            "" if _target_keys(runs) else "<section><p>No targets in this backtest.</p></section>",
            "</main></body></html>\n",
        ]
    )


def e(value: object) -> str:
    """Escape anything for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


# ---------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Scale:
    """Where a time and a value land in a chart's viewBox (``WIDTH`` × ``HEIGHT``).

    Time runs left to right over [start, end]; values bottom to top over [lo, hi].
    """

    start: datetime
    end: datetime
    lo: float
    hi: float
    step: float  # between value ticks

    @property
    def left(self) -> float:
        return float(LEFT)

    @property
    def right(self) -> float:
        return float(WIDTH - RIGHT)

    @property
    def top(self) -> float:
        return float(TOP)

    @property
    def bottom(self) -> float:
        return float(HEIGHT - BOTTOM)

    def x(self, ts: datetime) -> float:
        span = max((utc(self.end) - utc(self.start)).total_seconds(), 1.0)
        share = (utc(ts) - utc(self.start)).total_seconds() / span
        return self.left + share * (self.right - self.left)

    def y(self, value: float) -> float:
        share = (value - self.lo) / (self.hi - self.lo)
        return self.bottom - share * (self.bottom - self.top)


def scale_for(traces: Sequence[ObjectiveTrace], start: datetime, end: datetime) -> Scale:
    """The scale of a chart over [start, end] that fits every point, threshold and
    clearing line of ``traces`` (one objective, or the same one in two backtests), its
    value range widened to round ticks (and not below 0 for values that are not)."""
    values = [t.threshold for t in traces] + [t.clear for t in traces]
    for trace in traces:
        values += [v for p in _within(trace.points, start, end) if (v := _value(p)) is not None]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 if hi - lo > 1e-12 else max(abs(hi) * 0.1, 1.0)
    low = max(lo - pad, 0.0) if lo >= 0 else lo - pad
    high = hi + pad
    step = _nice_step((high - low) / 4)
    return Scale(start, end, math.floor(low / step) * step, math.ceil(high / step) * step, step)


def _nice_step(raw: float) -> float:
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def utc(ts: datetime) -> datetime:
    """Aware and in UTC (a naive time is taken to be UTC already)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def c(value: float) -> str:
    """A coordinate as written in the SVG: one decimal, no ``-0.0``."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _value(point: TimedValue) -> float | None:
    """The point's value; a NaN or infinity is no value (a gap), like ``None``."""
    _, value = point
    return value if value is not None and math.isfinite(value) else None


def _within(points: Iterable[TimedValue], start: datetime, end: datetime) -> list[TimedValue]:
    first, last = utc(start), utc(end)
    return [p for p in points if first <= utc(p[0]) <= last]


def runs_of(points: Sequence[TimedValue], start: datetime, end: datetime) -> list[list[TimedValue]]:
    """The points in [start, end] with a value, split at each gap (``None``): one
    polyline each."""
    runs: list[list[TimedValue]] = [[]]
    for point in sorted(_within(points, start, end), key=lambda p: utc(p[0])):
        if _value(point) is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def thinned(run: list[TimedValue], s: Scale) -> list[TimedValue]:
    """The points of a run a chart can show: of each half-pixel column, the first, the
    lowest, the highest and the last, in time order. A week at a one-minute grain is
    about fifteen points a pixel; this keeps every peak and trough, and the report small."""
    kept: list[TimedValue] = []
    column: list[TimedValue] = []
    at: int | None = None
    for point in run:
        here = int(s.x(point[0]) * 2)
        if here != at and column:
            kept += _extremes(column)
            column = []
        at = here
        column.append(point)
    return kept + _extremes(column) if column else kept


def _extremes(column: list[TimedValue]) -> list[TimedValue]:
    if len(column) <= 4:
        return column
    low = min(range(len(column)), key=lambda i: column[i][1] or 0.0)
    high = max(range(len(column)), key=lambda i: column[i][1] or 0.0)
    return [column[i] for i in sorted({0, low, high, len(column) - 1})]


# seconds between time ticks: the first that leaves at most 7 of them
TIME_STEPS = (
    *(1, 2, 5, 10, 15, 30),
    *(60 * m for m in (1, 2, 5, 10, 15, 30)),
    *(3600 * h for h in (1, 2, 3, 6, 12, 24, 48, 168)),
)


def _time_ticks(start: datetime, end: datetime) -> tuple[list[datetime], str]:
    first, last = utc(start), utc(end)
    span = max((last - first).total_seconds(), 1.0)
    step = next((s for s in TIME_STEPS if span / s <= 7), 0) or 86400 * math.ceil(span / 7 / 86400)
    epoch = math.ceil(first.timestamp() / step) * step
    ticks = []
    while epoch <= last.timestamp():
        ticks.append(datetime.fromtimestamp(epoch, UTC))
        epoch += step
    if step >= 86400:
        fmt = "%m-%d"
    elif step < 60:
        fmt = "%H:%M:%S"
    elif first.date() == last.date():
        fmt = "%H:%M"
    else:
        fmt = "%m-%d %H:%M"
    return ticks, fmt


def _value_label(value: float, step: float) -> str:
    """A tick's value with as many decimals as the step needs (2.5 → one, 20 → none)."""
    decimals = next((d for d in range(12) if abs(round(step, d) - step) <= step * 1e-9), 12)
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def chart(
    trace: ObjectiveTrace,
    markers: Sequence[Marker],
    start: datetime,
    end: datetime,
    scale: Scale | None = None,
) -> str:
    """One objective's values over [start, end] as an SVG line chart: the threshold
    (solid) and clearing line (dashed), the breach windows shaded, and the target's
    decisions as markers on the time axis, each with a tooltip."""
    s = scale or scale_for([trace], start, end)
    label = f"{trace.name}: {trace.measures}, holds while {trace.comparison} {trace.threshold:g}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"',
        f' xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{e(label)}"',
        f' data-objective="{e(trace.name)}">',
        f'<rect class="plot" x="{c(s.left)}" y="{c(s.top)}" width="{c(s.right - s.left)}"',
        f' height="{c(s.bottom - s.top)}" fill="#fbfcfd" stroke="#dde1e8"/>',
    ]
    for since, until in trace.breaches:
        lo, hi = max(utc(since), utc(start)), min(utc(until), utc(end))
        if hi <= lo:
            continue
        x0, x1 = s.x(lo), s.x(hi)
        parts.append(
            f'<rect class="breach" x="{c(x0)}" y="{c(s.top)}" width="{c(x1 - x0)}"'
            f' height="{c(s.bottom - s.top)}" fill="{BREACH}" fill-opacity="0.12">'
            f"<title>{e(f'in breach {_hms(since)} – {_hms(until)} UTC')}</title></rect>"
        )
    parts.append(_value_axis(s))
    parts.append(_time_axis(s))
    parts.append(_hline(s, trace.threshold, "threshold", THRESHOLD, ""))
    if trace.clear != trace.threshold:
        parts.append(_hline(s, trace.clear, "clear", CLEAR, ' stroke-dasharray="6 4"'))
    for run in runs_of(trace.points, start, end):
        coords = " ".join(f"{c(s.x(ts))},{c(s.y(value or 0.0))}" for ts, value in thinned(run, s))
        parts.append(
            f'<polyline class="series" points="{coords}" fill="none" stroke="{SERIES}"'
            ' stroke-width="1.8" stroke-linejoin="round"/>'
        )
        if len(run) == 1:  # a lone value between gaps: a dot, as a line of one is invisible
            x, y = coords.split(",")
            parts.append(f'<circle class="dot" cx="{x}" cy="{y}" r="2.5" fill="{SERIES}"/>')
    for marker in sorted(markers, key=_marker_order):
        if utc(start) <= utc(marker.ts) <= utc(end):
            parts.append(_marker(s, marker))
    parts.append("</svg>")
    return "".join(parts)


def _hms(ts: datetime) -> str:
    return f"{utc(ts):%Y-%m-%d %H:%M:%S}"


def _hline(s: Scale, value: float, cls: str, colour: str, extra: str) -> str:
    y = c(s.y(value))
    tip = e(f"{'threshold' if cls == 'threshold' else 'clears at'} {value:g}")
    return (
        f'<line class="{cls}" x1="{c(s.left)}" y1="{y}" x2="{c(s.right)}" y2="{y}"'
        f' stroke="{colour}" stroke-width="1.4"{extra}><title>{tip}</title></line>'
    )


def _value_axis(s: Scale) -> str:
    parts = []
    count = round((s.hi - s.lo) / s.step)
    for i in range(count + 1):
        value = s.lo + i * s.step
        y = c(s.y(value))
        parts.append(
            f'<line class="grid" x1="{c(s.left)}" y1="{y}" x2="{c(s.right)}" y2="{y}"'
            ' stroke="#eef0f4"/>'
            f'<text x="{c(s.left - 6)}" y="{y}" dy="4" text-anchor="end" font-size="11"'
            f' fill="#5a6275">{e(_value_label(value, s.step))}</text>'
        )
    return "".join(parts)


def _time_axis(s: Scale) -> str:
    ticks, fmt = _time_ticks(s.start, s.end)
    bottom = c(s.bottom)
    parts = [
        f'<line class="axis" x1="{c(s.left)}" y1="{bottom}" x2="{c(s.right)}" y2="{bottom}"'
        ' stroke="#80869a"/>'
    ]
    for tick in ticks:
        x = c(s.x(tick))
        parts.append(
            f'<line class="tick" x1="{x}" y1="{bottom}" x2="{x}" y2="{c(s.bottom + 4)}"'
            ' stroke="#80869a"/>'
            f'<text x="{x}" y="{c(s.bottom + LANE + 22)}" text-anchor="middle" font-size="11"'
            f' fill="#5a6275">{e(f"{tick:{fmt}}")}</text>'
        )
    parts.append(
        f'<text x="{c(s.right)}" y="{HEIGHT - 2}" text-anchor="end" font-size="11"'
        ' fill="#5a6275">time (UTC)</text>'
    )
    return "".join(parts)


def _marker_order(marker: Marker) -> tuple[datetime, str, str]:
    return utc(marker.ts), marker.kind, marker.action or ""


def _symbol(kind: MarkerKind, x: float, y: float) -> str:
    """The marker's shape centred on (x, y): ▲ applied, △ would have run, ✕ denied,
    ◆ pending, ■ escalated."""
    colour = MARKERS[kind][0]
    if kind in ("acted", "would-run"):  # applied: filled; would have run: hollow
        d = f"M{c(x)},{c(y - 6)} L{c(x + 6)},{c(y + 5)} L{c(x - 6)},{c(y + 5)} Z"
        if kind == "would-run":
            return f'<path d="{d}" fill="#fff" stroke="{colour}" stroke-width="1.6"/>'
        return f'<path d="{d}" fill="{colour}"/>'
    if kind == "denied":
        d = (
            f"M{c(x - 5)},{c(y - 5)} L{c(x + 5)},{c(y + 5)} "
            f"M{c(x - 5)},{c(y + 5)} L{c(x + 5)},{c(y - 5)}"
        )
        return f'<path d="{d}" stroke="{colour}" stroke-width="2.4" fill="none"/>'
    if kind == "pending-approval":
        d = f"M{c(x)},{c(y - 6)} L{c(x + 6)},{c(y)} L{c(x)},{c(y + 6)} L{c(x - 6)},{c(y)} Z"
        return f'<path d="{d}" fill="{colour}"/>'
    return f'<rect x="{c(x - 5)}" y="{c(y - 5)}" width="10" height="10" fill="{colour}"/>'


def marker_text(marker: Marker) -> str:
    """What a marker's tooltip (and the decisions table) says, unescaped."""
    what = marker.action or "—"
    if marker.action and (moved := change(marker)):
        what += f" ({moved})"
    head = {
        "acted": f"applied: {what}",
        "would-run": f"would have run (not applied): {what}",
        "denied": f"denied: {what} (guard: {marker.guard or 'unknown'})",
        "pending-approval": f"waiting for approval: {what}",
        "escalation": f"escalated{'' if marker.action is None else f': {what}'}",
    }[marker.kind]
    return f"{_hms(marker.ts)} UTC · {head} — {marker.reason}"


def change(marker: Marker) -> str:
    """``minReplicas 1→2``: what the action changed (or would have), unescaped; the
    parameters when the record has no before and after."""
    before, after = marker.before, marker.after or marker.params
    moved = [
        f"{key} {_plain(before.get(key))}→{_plain(value)}"
        for key, value in after.items()
        if key in before and before.get(key) != value
    ]
    if moved:
        return ", ".join(moved)
    return ", ".join(f"{key}={_plain(value)}" for key, value in marker.params.items())


def _plain(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _marker(s: Scale, marker: Marker) -> str:
    x = s.x(marker.ts)
    guide = ""
    if marker.kind == "acted":  # an action: a faint line through the plot as well
        guide = (
            f'<line x1="{c(x)}" y1="{c(s.top)}" x2="{c(x)}" y2="{c(s.bottom)}"'
            f' stroke="{MARKERS["acted"][0]}" stroke-opacity="0.45" stroke-dasharray="2 3"/>'
        )
    return (
        f'<g class="marker {marker.kind}" data-kind="{marker.kind}" data-x="{c(x)}">'
        f"<title>{e(marker_text(marker))}</title>{guide}"
        f"{_symbol(marker.kind, x, s.bottom + LANE)}</g>"
    )


def _legend() -> str:
    items = [
        f'<svg width="26" height="14" viewBox="0 0 26 14"><line x1="1" y1="7" x2="25" y2="7"'
        f' stroke="{SERIES}" stroke-width="1.8"/></svg> value',
        f'<svg width="26" height="14" viewBox="0 0 26 14"><line x1="1" y1="7" x2="25" y2="7"'
        f' stroke="{THRESHOLD}" stroke-width="1.4"/></svg> threshold',
        f'<svg width="26" height="14" viewBox="0 0 26 14"><line x1="1" y1="7" x2="25" y2="7"'
        f' stroke="{CLEAR}" stroke-width="1.4" stroke-dasharray="6 4"/></svg> clearing line',
        f'<svg width="26" height="14" viewBox="0 0 26 14"><rect x="1" y="1" width="24"'
        f' height="12" fill="{BREACH}" fill-opacity="0.12"/></svg> in breach',
    ]
    for kind, (_, text) in MARKERS.items():
        items.append(
            f'<svg width="14" height="14" viewBox="0 0 14 14">{_symbol(kind, 7, 7)}</svg> {text}'
        )
    return '<div class="legend">' + "".join(f"<span>{i}</span>" for i in items) + "</div>"


# ---------------------------------------------------------------------------- page


def mode_text(run: Backtest) -> str:
    """What the run's "actions" were: applied to Azure, to a simulation, or not at all."""
    if run.source == "audit":
        return {
            "live": "live: actions were applied to Azure",
            "dry-run": "dry-run: nothing was applied; would-run actions are proposals",
            "mixed": "dry-run and live mixed: applied and would-run actions counted apart",
        }.get(run.mode, run.mode)
    if run.mode == "dry-run":
        return "replay in dry-run: nothing applied, not even to the simulation"
    return "replay, live decisions on a simulated estate: nothing in Azure changed"


def _header(runs: tuple[Backtest, ...], title: str) -> str:
    rows = []
    for head, run in zip(_column_heads(runs), runs, strict=True):
        if run.source == "audit":
            effects = "as recorded in the audit log"
        else:
            effects = (
                "actions change the replayed signals" if run.effects else "replayed as recorded"
            )
        cells = (
            head,
            f'<span class="mode" data-mode="{e(run.mode)}">{e(mode_text(run))}</span>',
            e(f"{_hms(run.start)} UTC"),
            e(f"{_hms(run.end)} UTC"),
            e(len(run.targets)),
            e(effects),
        )
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    heads = ("policy set", "mode", "from", "to", "targets", "effects")
    th = "".join(f"<th>{h}</th>" for h in heads)
    sets = f'<table class="sets"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f"<header><h1>{e(title)}</h1>{sets}</header>"


def _tags(runs: Sequence[Backtest]) -> tuple[str, ...]:
    """How columns are headed: nothing for one backtest, A and B for a comparison."""
    return ("",) if len(runs) == 1 else ("A", "B")


def _column_heads(runs: Sequence[Backtest]) -> list[str]:
    return [
        f'{f"{tag}: " if tag else ""}<span class="set">{e(run.label)}</span>'
        for tag, run in zip(_tags(runs), runs, strict=True)
    ]


def _target_keys(runs: Sequence[Backtest]) -> list[tuple[str, str]]:
    """(policy, target) in the first backtest's order, then any only in the second."""
    keys: list[tuple[str, str]] = []
    for run in runs:
        for t in run.targets:
            if (t.policy, t.target) not in keys:
                keys.append((t.policy, t.target))
    return keys


def _find(run: Backtest, key: tuple[str, str]) -> TargetTrace | None:
    return next((t for t in run.targets if (t.policy, t.target) == key), None)


def anchor(policy: str) -> str:
    """A target section's id: ``target-`` and the policy name, as letters, digits and -."""
    return "target-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", policy).strip("-") or "policy")


def _target(runs: tuple[Backtest, ...], key: tuple[str, str], prices: Prices | None) -> str:
    policy, target = key
    traces = [_find(run, key) for run in runs]
    names: list[str] = []
    for trace in traces:
        for objective in trace.objectives if trace else ():
            if objective.name not in names:
                names.append(objective.name)
    parts = [
        f'<section class="target" id="{e(anchor(policy))}" data-policy="{e(policy)}">',
        f"<h2>{e(policy)}</h2>",
        f'<p class="resource">{e(target)}</p>',
        _legend(),
        f'<div class="charts {"two" if len(runs) == 2 else "one"}">',
    ]
    if len(runs) > 1:
        parts += [f'<div><h3 class="column">{head}</h3></div>' for head in _column_heads(runs)]
    for name in names:
        found = [
            next((o for o in trace.objectives if o.name == name), None) if trace else None
            for trace in traces
        ]
        scale_traces = [o for o in found if o is not None]
        for run, trace, chosen in zip(runs, traces, found, strict=True):
            if trace is None or chosen is None:
                missing = '<p class="muted">Not in this backtest.</p>'
                parts.append(f"<div><h4>{e(name)}</h4>{missing}</div>")
                continue
            scale = scale_for(scale_traces, run.start, run.end)
            holds = f"{chosen.measures} · holds while {chosen.comparison} {chosen.threshold:g}"
            if chosen.clear != chosen.threshold:
                holds += f"; clears at {chosen.clear:g}"
            parts.append(
                f'<div><h4>{e(chosen.name)} <small class="muted">{e(holds)}</small></h4>'
                f"{chart(chosen, trace.markers, run.start, run.end, scale)}"
                f"{_saturated(chosen)}</div>"
            )
    parts.append("</div>")
    sides = [[t.summary] if t else None for t in traces]
    parts.append("<h3>Summary</h3>")
    parts.append(_comparison_table(runs, _rows(sides, prices)))
    parts.append(_decisions(runs, traces))
    parts.append("</section>")
    return "".join(parts)


def _saturated(trace: ObjectiveTrace) -> str:
    """The warning under a chart whose values were pinned at a ceiling while in breach."""
    if trace.saturated is None:
        return ""
    return (
        f'<p class="warning" data-objective="{e(trace.name)}">'
        f"Saturated: {e(trace.saturated)}. Open-loop (--no-effects) shows the other bound.</p>"
    )


DECISION: dict[MarkerKind, str] = {  # the decisions table's words for each marker
    "acted": "applied",
    "would-run": "would run",
    "denied": "denied",
    "pending-approval": "pending approval",
    "escalation": "escalation",
}


def _decisions(runs: Sequence[Backtest], traces: Sequence[TargetTrace | None]) -> str:
    blocks = []
    for head, trace in zip(_column_heads(runs), traces, strict=True):
        if trace is None:
            continue
        rows = [
            (
                e(f"{_hms(m.ts)}"),
                f'<span style="color:{MARKERS[m.kind][0]}">{e(DECISION[m.kind])}</span>',
                e(m.action or "—"),
                e((change(m) if m.action else "") or "—"),
                e(m.guard or "—"),
                e(m.reason),
            )
            for m in sorted(trace.markers, key=_marker_order)
        ]
        body = (
            _table(("time (UTC)", "decision", "action", "change", "guard", "reason"), rows)
            if rows
            else '<p class="muted">No decisions other than no-ops.</p>'
        )
        label = f" — {head}" if len(runs) > 1 else ""
        blocks.append(f"<details><summary>Decisions ({len(rows)}){label}</summary>{body}</details>")
    return "".join(blocks)


# ---------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Row:
    """One line of a summary table: a label and one value per backtest (``None``: not
    applicable), how to write it, and whether a rise is good, bad or neither."""

    label: str
    values: tuple[float | None, ...]
    kind: str  # "count", "minutes", "quantity", "money"
    rise: str = ""  # "bad", "good" or "" (neutral): colours the difference
    note: str = ""  # HTML, after the label


def number(value: float | None, kind: str) -> str:
    """A value as the tables write it (unescaped): counts whole, minutes and quantities
    to two decimals without trailing zeros, money to cents (four places under 1)."""
    if value is None:
        return "—"
    if kind == "count":
        text = f"{value:.0f}"
    elif kind == "money":
        text = f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"
    else:
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text.lstrip("-").strip("0.,") == "" else text


def difference(values: Sequence[float | None], kind: str) -> str:
    """Second minus first, signed (unescaped); ``—`` when either is missing."""
    first, second = values[0], values[1]
    if first is None or second is None:
        return "—"
    delta = second - first
    text = number(abs(delta), kind)
    if text == "0":
        return "0"
    return ("+" if delta > 0 else "−") + text


Side = Sequence[TargetSummary] | None  # one backtest's summaries; None: target not in it


def _rows(sides: Sequence[Side], prices: Prices | None, overall: bool = False) -> list[Row]:
    """The summary lines for each side: one target's summary, or all of a backtest's."""
    present = [s for side in sides if side is not None for s in side]
    actions = sorted({a for s in present for a in s.actions})
    proposed = sorted({a for s in present for a in s.would_run})
    guards = sorted({g for s in present for g in s.denied})
    units = sorted({u for s in present for u in s.cost.units})
    currencies = sorted({s.cost.currency for s in present}) or ["USD"]

    def total(get: Callable[[TargetSummary], float]) -> tuple[float | None, ...]:
        return tuple(None if side is None else float(sum(get(s) for s in side)) for side in sides)

    def firsts(pick: Callable[[list[float]], float]) -> tuple[float | None, ...]:
        out: list[float | None] = []
        for side in sides:
            known = [m for s in side or () if (m := s.first_action_minutes) is not None]
            out.append(pick(known) if known else None)
        return tuple(out)

    rows = []
    if overall:
        rows += [
            Row("targets", total(lambda s: 1), "count"),
            Row("targets ever in breach", total(lambda s: s.breach_minutes > 0), "count", "bad"),
        ]
    rows.append(Row("actions applied", total(lambda s: sum(s.actions.values())), "count"))
    rows += [Row(f"· {a}", total(_counting("actions", a)), "count") for a in actions]
    if proposed:
        would = total(lambda s: sum(s.would_run.values()))
        rows.append(Row("would have run (distinct proposals, not applied)", would, "count"))
        rows += [Row(f"· {a}", total(_counting("would_run", a)), "count") for a in proposed]
    rows.append(Row("time in breach (min)", total(lambda s: s.breach_minutes), "minutes", "bad"))
    if overall:
        rows += [
            Row("breach → first action, mean (min)", firsts(_mean), "minutes", "bad"),
            Row("breach → first action, worst (min)", firsts(max), "minutes", "bad"),
        ]
    else:
        rows.append(Row("breach → first action (min)", firsts(max), "minutes", "bad"))
    rows += [
        Row("breaker openings", total(lambda s: s.breaker_openings), "count", "bad"),
        Row("escalations", total(lambda s: s.escalations), "count", "bad"),
        Row("denied by a guard", total(lambda s: sum(s.denied.values())), "count"),
    ]
    rows += [Row(f"· {g}", total(_counting("denied", g)), "count") for g in guards]
    rows += [
        Row(
            u,
            total(_counting("units", u)),
            "quantity",
            note=_price_note(u, prices),
        )
        for u in units
    ]
    rows += [
        Row(
            f"estimated cost of actions applied ({cur})",
            total(_costing(cur)),
            "money",
            "bad",
        )
        for cur in currencies
    ]
    if proposed:
        rows += [
            Row(
                f"estimated cost had the proposals been applied ({cur})",
                total(_costing(cur, would=True)),
                "money",
                "bad",
            )
            for cur in currencies
        ]
    return rows


def _counting(what: str, key: str) -> Callable[[TargetSummary], float]:
    """A summary's count of ``key`` among its actions, denials (by guard) or cost units."""

    def get(s: TargetSummary) -> float:
        table = {
            "actions": s.actions,
            "would_run": s.would_run,
            "denied": s.denied,
            "units": s.cost.units,
        }[what]
        return float(table.get(key, 0))

    return get


def _costing(currency: str, would: bool = False) -> Callable[[TargetSummary], float]:
    def get(s: TargetSummary) -> float:
        cost = s.would_cost if would else s.cost
        return cost.total if cost is not None and cost.currency == currency else 0.0

    return get


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _price_note(unit: str, prices: Prices | None) -> str:
    if prices is None:
        return ""
    price = unit_price(unit, prices)
    if price is None:
        return ' <span class="worse">unpriced (counted as 0)</span>'
    return f' <span class="muted">at {e(f"{price:.6g}")} {e(prices.currency)} each</span>'


def _comparison_table(runs: Sequence[Backtest], rows: Sequence[Row]) -> str:
    two = len(runs) == 2
    head = ["", *_column_heads(runs), *(["difference (B − A)"] if two else [])]
    th = "".join(f'<th class="{"n" if i else ""}">{h}</th>' for i, h in enumerate(head))
    body = []
    for row in rows:
        cells = [f"<td>{e(row.label)}{row.note}</td>"]
        cells += [f'<td class="n">{e(number(v, row.kind))}</td>' for v in row.values]
        if two:
            delta = difference(row.values, row.kind)
            cls = ""
            if row.rise and delta[:1] in ("+", "−"):
                rising = delta.startswith("+")
                cls = "worse" if rising == (row.rise == "bad") else "better"
            cells.append(f'<td class="{f"n {cls}" if cls else "n"}">{e(delta)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="summary"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _overall(runs: tuple[Backtest, ...], prices: Prices | None) -> str:
    rows = _rows([[t.summary for t in run.targets] for run in runs], prices, overall=True)
    return (
        '<section id="overall"><h2>All targets</h2>'
        f"{_comparison_table(runs, rows)}"
        "<h3>By target</h3>"
        f"{_by_target(runs)}</section>"
    )


BY_TARGET: tuple[tuple[str, str, Callable[[TargetSummary], float | None]], ...] = (
    ("applied", "count", lambda s: sum(s.actions.values())),
    ("would run", "count", lambda s: sum(s.would_run.values())),
    ("in breach (min)", "minutes", lambda s: s.breach_minutes),
    ("to first action (min)", "minutes", lambda s: s.first_action_minutes),
    ("denied", "count", lambda s: sum(s.denied.values())),
    ("escalations", "count", lambda s: s.escalations),
    ("cost", "money", lambda s: s.cost.total),
)


def _by_target(runs: tuple[Backtest, ...]) -> str:
    """One line per target, a few numbers (for two backtests: ``A → B (difference)``)."""
    two = len(runs) == 2
    head = ["policy", "resource", *(name for name, _, _ in BY_TARGET)]
    rows = []
    for policy, target in _target_keys(runs):
        summaries = [t.summary if (t := _find(run, (policy, target))) else None for run in runs]
        name = target.rstrip("/").split("/")[-1]  # the whole id is in the target's section
        cells = [
            f'<a href="#{e(anchor(policy))}">{e(policy)}</a>',
            f'<span class="resource" title="{e(target)}">{e(name)}</span>',
        ]
        for _, kind, get in BY_TARGET:
            values = [None if s is None else get(s) for s in summaries]
            text = " → ".join(number(v, kind) for v in values)
            if two:
                text += f" ({difference(values, kind)})"
            cells.append(e(text))
        rows.append(cells)
    return _table(head, rows)
