"""The backtest report in a real browser: opened from a file with the network refused,
its charts and tables render from the file alone."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from controller.backtest.model import Cost
from controller.backtest.prices import Prices
from controller.backtest.report import render
from tests.chromium import (
    BLANK_PAGE,
    PNG,
    dump_dom,
    keep,
    refusing_proxy,
    require_chromium,
    screenshot,
)
from tests.unit.test_backtest_report import POLICY, TARGET, backtest

pytestmark = pytest.mark.anyio


async def test_chromium_renders_a_comparison_report_from_a_file_with_no_network(
    tmp_path: Path,
) -> None:
    """Two policy sets side by side, written to a file and opened from ``file://``
    through a proxy that refuses everything: the screenshot is a real page, the DOM has
    each objective's chart twice (paired) and the summary tables with the differences,
    the reason holding markup stayed text, and nothing was asked of the network."""
    binary = require_chromium()
    proposed = backtest(
        "policies/proposed",
        actions={"scaleOut": 3},
        denied={},
        breach_minutes=4.5,
        cost=Cost({"replica-hours": 6.0}, 0.324),
    )
    report = tmp_path / "backtest.html"
    report.write_text(render([backtest(), proposed], prices=Prices()), encoding="utf-8")
    url = report.as_uri()
    shot = tmp_path / "backtest-report.png"
    async with refusing_proxy() as proxy:
        await screenshot(binary, url, shot, proxy)
        dom = await dump_dom(binary, url, tmp_path / "dom-profile", proxy)
    png = keep(shot)
    assert png.startswith(PNG) and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (1280, 1600)
    assert len(png) > 3 * BLANK_PAGE, len(png)  # charts and tables, not an empty page

    assert "<title>Remediator backtest</title>" in dom
    target = dom.split('<section class="target" id="target-api-cpu"')[1].split("</section>")[0]
    assert POLICY in target and TARGET in target
    charts = re.findall(r'<svg class="chart"[^>]*data-objective="([^"]+)"', target)
    assert charts == ["cpu", "cpu", "latency", "latency"]
    assert target.count("<polyline") == 2 * (2 + 1)  # cpu has a gap: two lines; latency one
    assert target.count('<rect class="breach"') == 2
    assert target.count('<g class="marker denied"') == 4  # on each of the four charts
    assert "denied: scaleOut (guard: cooldown)" in target
    assert target.count('<table class="summary">') == 1
    assert re.search(r"<td>time in breach \(min\)</td>.*?>12<.*?>4\.5<.*?>−7\.5<", target)
    assert '<section id="overall">' in dom and "difference (B − A)" in dom
    assert "<script" not in dom and "&lt;script&gt;" in dom  # the reason stayed text
    assert proxy.requests == []  # nothing beyond the file itself
