"""The backtest report: one self-contained HTML file, its charts drawn to scale, every
number from the summaries, every text escaped; and the price table behind the costs."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.backtest.model import (
    Backtest,
    Cost,
    Marker,
    ObjectiveTrace,
    Point,
    Points,
    TargetSummary,
    TargetTrace,
)
from controller.backtest.prices import (
    REDIS_HOURLY,
    Prices,
    PricesError,
    cost_of,
    load_prices,
    unit_price,
    unpriced,
)
from controller.backtest.report import chart, render, runs_of, scale_for

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
END = T0 + timedelta(minutes=60)
POLICY = "api-cpu"
TARGET = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/api"
EVIL = "<script>alert('x')</script>"


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def cpu_trace() -> ObjectiveTrace:
    """CPU every 5 minutes, a gap at 25 and 30, in breach from 10 to 22."""
    values: list[float | None] = [40, 45, 85, 92, 88, None, None, 60, 55, 50, 48, 45, 44]
    points = tuple(Point(minute(5 * i), v) for i, v in enumerate(values))
    return ObjectiveTrace(
        name="cpu",
        measures="UsageNanoCores",
        comparison="<",
        threshold=80.0,
        clear=70.0,
        points=points,
        breaches=((minute(10), minute(22)),),
    )


def latency_trace() -> ObjectiveTrace:
    points = tuple(Point(minute(10 * i), 200.0 + 10 * i) for i in range(7))
    return ObjectiveTrace("latency", "p95 ms", "<=", 500.0, 500.0, points, ())


def summary(**changes: object) -> TargetSummary:
    base = TargetSummary(
        actions={"scaleOut": 1},
        denied={"cooldown": 1},
        breach_minutes=12.0,
        first_action_minutes=2.5,
        breaker_openings=0,
        escalations=1,
        cost=Cost({"replica-hours": 2.0, "vcpu-hours": 1.0}, 0.1944),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def backtest(label: str = "policies/current", **changes: object) -> Backtest:
    markers = (
        Marker(minute(12.5), "acted", "scaleOut", "cpu above 80", params={"by": 2}),
        Marker(minute(15), "denied", "scaleOut", f"cooldown is 5m {EVIL}", guard="cooldown"),
        Marker(minute(20), "escalation", None, "breach outlasted the ladder"),
    )
    target = TargetTrace(
        POLICY, TARGET, (cpu_trace(), latency_trace()), markers, summary(**changes)
    )
    return Backtest(label, T0, END, True, (target,))


def svgs(html: str) -> dict[str, str]:
    """Each chart's SVG text by objective name."""
    found = re.findall(r'(<svg class="chart".*?data-objective="([^"]*)".*?</svg>)', html, re.S)
    return {name: svg for svg, name in found}


def numbers(attr: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(rf'\b{attr}="(-?[\d.]+)"', text)]


def row(html: str, label: str) -> list[str]:
    """The cells after ``label`` in the first table row starting with it."""
    match = re.search(rf"<tr><td>{re.escape(label)}.*?</td>(.*?)</tr>", html, re.S)
    assert match, label
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def section(html: str) -> str:
    return html.split('<section class="target" id="target-api-cpu"')[1].split("</section>")[0]


# ---------------------------------------------------------------------------- charts


def test_one_chart_per_objective_with_a_polyline_per_run_of_values() -> None:
    html = render([backtest()])
    charts = svgs(html)
    assert sorted(charts) == ["cpu", "latency"]
    for name, trace in (("cpu", cpu_trace()), ("latency", latency_trace())):
        svg = charts[name]
        assert 'viewBox="0 0 720 230"' in svg
        lines = re.findall(r'<polyline class="series" points="([^"]*)"', svg)
        drawn = sum(len(points.split()) for points in lines)
        assert drawn == sum(1 for p in trace.points if p[1] is not None)
    cpu = re.findall(r'<polyline class="series" points="([^"]*)"', charts["cpu"])
    assert [len(p.split()) for p in cpu] == [5, 6]  # the gap splits the line in two
    assert len(runs_of(cpu_trace().points, T0, END)) == 2


def test_a_week_at_a_minute_grain_is_thinned_to_what_the_chart_shows() -> None:
    """10,080 points on a 720-wide chart: at most four a half-pixel column are drawn,
    and the one-minute spike and the one-minute dip are among them."""
    week = [T0 + timedelta(minutes=m) for m in range(7 * 1440)]
    values: list[float | None] = [50.0 + (m % 7) for m in range(len(week))]
    values[4321], values[8000] = 99.0, 3.0
    trace = ObjectiveTrace("cpu", "CpuPercentage", "<", 70.0, 60.0, Points(week, values), ())
    svg = chart(trace, (), week[0], week[-1])
    [line] = re.findall(r'<polyline class="series" points="([^"]*)"', svg)
    coords = [tuple(float(v) for v in pair.split(",")) for pair in line.split()]
    assert len(coords) <= 4 * 2 * 720
    assert len(coords) < len(week) / 2
    scale = scale_for([trace], week[0], week[-1])
    ys = {round(y, 1) for _, y in coords}
    assert round(scale.y(99.0), 1) in ys and round(scale.y(3.0), 1) in ys
    xs = [x for x, _ in coords]
    assert xs == sorted(xs)  # still in time order


def test_points_land_where_the_scale_puts_them() -> None:
    trace = cpu_trace()
    scale = scale_for([trace], T0, END)
    assert scale.lo <= 40 and scale.hi >= 92 and scale.lo >= 0
    assert scale.x(T0) == scale.left and scale.x(END) == scale.right
    assert scale.y(scale.lo) == scale.bottom and scale.y(scale.hi) == scale.top
    first = re.search(r'<polyline class="series" points="([^"]*)"', chart(trace, (), T0, END))
    assert first
    x, y = (float(v) for v in first.group(1).split()[0].split(","))
    assert x == pytest.approx(scale.x(T0), abs=0.05)
    assert y == pytest.approx(scale.y(40), abs=0.05)


def test_threshold_solid_clear_dashed_and_the_breach_shaded_to_scale() -> None:
    svg = svgs(render([backtest()]))["cpu"]
    scale = scale_for([cpu_trace()], T0, END)
    threshold = re.search(r'<line class="threshold"[^>]*>', svg)
    clear = re.search(r'<line class="clear"[^>]*>', svg)
    assert threshold and clear
    assert numbers("y1", threshold.group(0)) == [pytest.approx(scale.y(80), abs=0.05)]
    assert numbers("y1", clear.group(0)) == [pytest.approx(scale.y(70), abs=0.05)]
    assert "stroke-dasharray" in clear.group(0) and "stroke-dasharray" not in threshold.group(0)
    assert "<title>threshold 80</title>" in svg and "<title>clears at 70</title>" in svg

    breaches = re.findall(r'<rect class="breach"[^>]*>', svg)
    assert len(breaches) == 1
    (x,), (width,) = numbers("x", breaches[0]), numbers("width", breaches[0])
    assert x == pytest.approx(scale.x(minute(10)), abs=0.05)
    assert x + width == pytest.approx(scale.x(minute(22)), abs=0.1)
    assert "in breach 2024-05-01 12:10:00 – 2024-05-01 12:22:00 UTC" in svg

    latency = svgs(render([backtest()]))["latency"]
    assert '<line class="threshold"' in latency
    assert '<line class="clear"' not in latency  # clears at the threshold: one line
    assert '<rect class="breach"' not in latency


def test_markers_on_the_time_axis_with_their_guard_in_a_tooltip() -> None:
    svg = svgs(render([backtest()]))["cpu"]
    scale = scale_for([cpu_trace()], T0, END)
    marks = re.findall(
        r'<g class="marker ([a-z-]+)" data-kind="\1" data-x="([\d.]+)">'
        r"<title>(.*?)</title>",
        svg,
    )
    assert [k for k, _, _ in marks] == ["acted", "denied", "escalation"]
    expected = [scale.x(minute(12.5)), scale.x(minute(15)), scale.x(minute(20))]
    assert [float(x) for _, x, _ in marks] == pytest.approx(expected, abs=0.05)
    titles = {k: t for k, _, t in marks}
    assert titles["acted"] == "2024-05-01 12:12:30 UTC · applied: scaleOut (by=2) — cpu above 80"
    assert "denied: scaleOut (guard: cooldown)" in titles["denied"]
    assert "escalated — breach outlasted the ladder" in titles["escalation"]
    # each kind its own colour
    colours = {
        k: re.search(rf'class="marker {k}".*?(?:fill|stroke)="(#\w+)"', svg, re.S) for k in titles
    }
    assert len({m.group(1) for m in colours.values() if m}) == 3


def test_time_axis_in_utc_and_value_labels() -> None:
    svg = svgs(render([backtest()]))["cpu"]
    labels = re.findall(r'text-anchor="middle"[^>]*>([^<]*)</text>', svg)
    assert labels == ["12:00", "12:10", "12:20", "12:30", "12:40", "12:50", "13:00"]
    assert "time (UTC)" in svg
    values = re.findall(r'text-anchor="end" font-size="11" fill="#5a6275">([\d.]+)</text>', svg)
    assert values == ["20", "40", "60", "80", "100"]  # round ticks around 40 … 92


# ---------------------------------------------------------------------------- tables


def test_the_page_names_the_set_and_target_and_sums_it_up() -> None:
    html = render([backtest()])
    assert html.startswith("<!doctype html>") and "<title>Remediator backtest</title>" in html
    assert "policies/current" in html and POLICY in html and TARGET in html
    target = section(html)
    assert row(target, "actions applied") == ["1"]
    assert row(target, "· scaleOut") == ["1"]
    assert row(target, "time in breach (min)") == ["12"]
    assert row(target, "breach → first action (min)") == ["2.5"]
    assert row(target, "breaker openings") == ["0"]
    assert row(target, "escalations") == ["1"]
    assert row(target, "· cooldown") == ["1"]
    assert row(target, "replica-hours") == ["2"]
    assert row(target, "estimated cost of actions applied (USD)") == ["0.1944"]
    overall = html.split('<section id="overall">')[1].split("</section>")[0]
    assert row(overall, "targets") == ["1"]
    assert row(overall, "breach → first action, worst (min)") == ["2.5"]
    assert row(overall, "estimated cost of actions applied (USD)") == ["0.1944"]
    assert '<a href="#target-api-cpu">api-cpu</a>' in overall
    assert f'<span class="resource" title="{TARGET}">api</span>' in overall


def test_prices_given_show_each_unit_price_and_flag_the_unpriced() -> None:
    run = backtest(cost=Cost({"replica-hours": 2.0, "widget-hours": 3.0}, 0.108))
    html = section(render([run], prices=Prices()))
    assert "at 0.054 USD each" in html
    assert re.search(r"widget-hours <span class=\"worse\">unpriced", html)


def test_every_text_from_data_is_escaped() -> None:
    evil = backtest(label=EVIL)
    evil = replace(
        evil,
        targets=(replace(evil.targets[0], policy=EVIL, target=EVIL),),
    )
    html = render([evil], title=EVIL)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 5  # title, set, policy, target, reason…


def test_self_contained_and_deterministic() -> None:
    html = render([backtest()])
    assert render([backtest()]) == html
    links = re.findall(r'\b(?:src|href)\s*=\s*["\']?([^"\' >]*)', html, re.I)
    assert links and all(link.startswith("#") for link in links)  # in-page anchors only
    assert not re.search(r"\b(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, re.I)
    assert "<script" not in html and "<link" not in html and "@import" not in html


def test_odd_inputs_still_draw() -> None:
    """Naive times (taken as UTC), NaN (a gap), a flat series, a lone value, a period of
    no length and one of weeks: a chart each, no exception, round labels."""
    naive = T0.replace(tzinfo=None)
    flat = ObjectiveTrace(
        "flat",
        "m",
        ">",
        5.0,
        5.0,
        (
            Point(naive, 5.0),
            Point(naive + timedelta(minutes=1), float("nan")),
            Point(naive + timedelta(minutes=2), 5.0),
        ),
        ((naive, naive + timedelta(minutes=90)),),  # past the end: clipped
    )
    svg = chart(flat, (Marker(naive, "pending-approval", "restart", "wait"),), T0, END)
    assert svg.count("<polyline") == 2 and svg.count('<circle class="dot"') == 2
    assert '<g class="marker pending-approval"' in svg
    breach = re.search(r'<rect class="breach"[^>]*>', svg)
    assert breach and numbers("width", breach.group(0)) == [pytest.approx(720 - 64 - 16)]
    assert "<svg" in chart(flat, (), T0, T0)  # start == end
    weeks = chart(flat, (), T0, T0 + timedelta(days=120))
    labels = re.findall(r'text-anchor="middle"[^>]*>([^<]*)</text>', weeks)
    assert 3 <= len(labels) <= 8 and all(re.fullmatch(r"\d\d-\d\d", t) for t in labels)
    tiny = replace(flat, threshold=0.0002, clear=0.0001, points=(Point(T0, 0.00015),))
    assert re.search(r">0\.0002\d*</text>", chart(tiny, (), T0, END))


def test_an_empty_backtest_and_wrong_counts() -> None:
    empty = Backtest("none", T0, END, False, ())
    assert "No targets in this backtest." in render([empty])
    with pytest.raises(ValueError, match="one backtest or compares two"):
        render([])
    with pytest.raises(ValueError, match="not 3"):
        render([empty, empty, empty])


# ---------------------------------------------------------------------------- comparison


def test_two_backtests_side_by_side_with_the_differences() -> None:
    first = backtest("policies/current")
    second = backtest(
        "policies/proposed",
        actions={"scaleOut": 3},
        denied={},
        breach_minutes=4.5,
        first_action_minutes=0.5,
        escalations=0,
        cost=Cost({"replica-hours": 6.0, "vcpu-hours": 3.0}, 0.5832),
    )
    html = render([first, second])
    assert 'A: <span class="set">policies/current</span>' in html
    assert 'B: <span class="set">policies/proposed</span>' in html
    target = section(html)
    assert '<div class="charts two">' in target
    charts = re.findall(r'data-objective="([^"]*)"', target)
    assert charts == ["cpu", "cpu", "latency", "latency"]  # paired, objective by objective
    assert "difference (B − A)" in target
    assert row(target, "actions applied") == ["1", "3", "+2"]
    assert row(target, "time in breach (min)") == ["12", "4.5", "−7.5"]
    assert row(target, "breach → first action (min)") == ["2.5", "0.5", "−2"]
    assert row(target, "escalations") == ["1", "0", "−1"]
    assert row(target, "· cooldown") == ["1", "0", "−1"]
    assert row(target, "estimated cost of actions applied (USD)") == ["0.1944", "0.5832", "+0.3888"]
    # less time in breach is better, more money is worse
    assert re.search(r'<td class="n better">−7.5</td>', target)
    assert re.search(r'<td class="n worse">\+0.3888</td>', target)
    overall = html.split('<section id="overall">')[1].split("</section>")[0]
    assert row(overall, "actions applied") == ["1", "3", "+2"]
    by_target = overall.split("<h3>By target</h3>")[1]
    assert "<td>1 → 3 (+2)</td>" in by_target  # actions
    assert "<td>12 → 4.5 (−7.5)</td>" in by_target  # in breach


def test_a_pair_shares_one_value_scale_and_a_missing_target_is_said() -> None:
    first = backtest()
    hot = replace(cpu_trace(), points=(Point(minute(5), 180.0),))
    second = replace(first, label="b", targets=(replace(first.targets[0], objectives=(hot,)),))
    html = render([first, second])
    shared = scale_for([cpu_trace(), hot], T0, END)
    assert shared.hi >= 180
    for svg in re.findall(r'<svg class="chart".*?data-objective="cpu".*?</svg>', html, re.S):
        threshold = re.search(r'<line class="threshold"[^>]*>', svg)
        assert threshold
        assert numbers("y1", threshold.group(0)) == [pytest.approx(shared.y(80), abs=0.05)]
    assert "Not in this backtest." in section(html)  # latency only in the first

    lone = replace(first, label="c", targets=())
    html = render([first, lone])
    assert row(section(html), "actions applied") == ["1", "—", "—"]


# ---------------------------------------------------------------------------- layers


def test_the_report_does_not_import_the_emulator() -> None:
    code = (
        "import sys, controller.backtest.report, controller.backtest.prices;"
        "print(sorted(m for m in sys.modules if m.startswith('controller.emulator')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- prices


def test_default_prices_are_the_documented_list_prices() -> None:
    p = Prices()
    assert p.currency == "USD"
    assert unit_price("vcpu-hours", p) == pytest.approx(0.000024 * 3600)
    assert unit_price("gib-hours", p) == pytest.approx(0.000003 * 3600)
    assert p.replica_hour == pytest.approx(0.054)  # 0.5 vCPU + 1 GiB for an hour
    assert unit_price("ru-hours", p) == pytest.approx(0.008 / 100)
    assert unit_price("ru-hours-autoscale", p) == pytest.approx(0.012 / 100)
    assert unit_price("redis:Standard:C2-hours", p) == REDIS_HOURLY["Standard:C2"]
    assert unit_price("redis:premium:p1-hours", p) == REDIS_HOURLY["Premium:P1"]
    sizes = {k.split(":")[1] for k in REDIS_HOURLY}
    assert sizes == {f"C{i}" for i in range(7)} | {f"P{i}" for i in range(1, 6)}


def test_cost_of_prices_each_unit_and_an_unknown_one_as_zero() -> None:
    units = {
        "replica-hours": 2.0,
        "vcpu-hours": 1.0,
        "gib-hours": 2.0,
        "ru-hours": 1000.0,  # 1000 RU/s for an hour
        "ru-hours-autoscale": 400.0,
        "redis:Standard:C2-hours": 3.0,
        "redis:Basic:C9-hours": 1.0,
        "redis-unit-hours": 5.0,
    }
    cost = cost_of(units, Prices())
    expected = 2 * 0.054 + 0.0864 + 2 * 0.0108 + 10 * 0.008 + 4 * 0.012 + 3 * 0.226
    assert cost.total == pytest.approx(expected)
    assert cost.currency == "USD"
    assert dict(cost.units) == units  # every unit kept, priced or not
    assert unpriced(units, Prices()) == ("redis-unit-hours", "redis:Basic:C9-hours")
    assert cost_of({}, Prices()) == Cost({}, 0.0, "USD")


def test_load_prices_overrides_any_subset(tmp_path: Path) -> None:
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text(
        "currency: EUR\nvcpuSecond: 0.00003\nreplicaHour: 0.1\n"
        "redisHour:\n  standard:c2: 0.3\n  Basic:C0: 0.02\n"
    )
    p = load_prices(yaml_file)
    assert p.currency == "EUR" and p.vcpu_second == 0.00003 and p.replica_hour == 0.1
    assert p.gib_second == Prices().gib_second  # untouched keys keep the defaults
    assert p.redis_hour["Standard:C2"] == 0.3 and p.redis_hour["Basic:C0"] == 0.02
    assert p.redis_hour["Premium:P1"] == REDIS_HOURLY["Premium:P1"]  # merged, not replaced
    cost = cost_of({"redis:Standard:C2-hours": 2.0}, p)
    assert cost == Cost({"redis:Standard:C2-hours": 2.0}, 0.6, "EUR")

    json_file = tmp_path / "prices.json"
    json_file.write_text('{"ru100Hour": 0.01, "ru100HourAutoscale": 0.015}')
    p = load_prices(json_file)
    assert (p.ru100_hour, p.ru100_hour_autoscale) == (0.01, 0.015)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_prices(empty) == Prices()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vcpuSecnd: 0.1\n", r"prices.yaml: vcpuSecnd: unknown key \(known keys: currency, "),
        ("vcpu_second: 0.1\n", "vcpu_second: unknown key"),
        ("gibSecond: cheap\n", "gibSecond: must be a number, not 'cheap'"),
        ("gibSecond: -1\n", "gibSecond: must not be negative"),
        ("ru100Hour: true\n", "ru100Hour: must be a number"),
        ("redisHour: {Standard-C2: 1}\n", "redisHour.Standard-C2: not a"),
        ("redisHour: 3\n", "redisHour: must map"),
        ("currency: 3\n", "currency: must be a currency code"),
        ("- 1\n", "prices must be a mapping"),
        ("a: [\n", "not valid yaml"),
    ],
)
def test_load_prices_names_the_bad_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PricesError, match=message):
        load_prices(path)


def test_load_prices_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PricesError, match="cannot read prices"):
        load_prices(tmp_path / "nope.yaml")
