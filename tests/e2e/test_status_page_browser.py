"""The status page in a real browser: it renders from loopback alone, nothing external."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from controller.clock import VirtualClock
from controller.emulator import Emulator
from tests.chromium import (
    BLANK_PAGE,
    PNG,
    dump_dom,
    keep,
    refusing_proxy,
    require_chromium,
    screenshot,
)
from tests.conftest import APP_ID
from tests.integration.test_status_page import controller_after_spike

pytestmark = pytest.mark.anyio


async def test_chromium_renders_the_status_page_with_no_network(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """After the cpu spike's first scaleOut, headless Chromium loads ``/`` through a proxy
    that refuses everything but loopback: the screenshot is a real page, the DOM shows
    the target and its last decision, and the proxy was never asked for anything."""
    binary = require_chromium()
    shot = tmp_path / "status-page.png"
    async with (
        refusing_proxy() as proxy,
        controller_after_spike(tmp_path, clock, emulator[1]) as base,
    ):
        await screenshot(binary, base + "/", shot, proxy)
        dom = await dump_dom(binary, base + "/", tmp_path / "dom-profile", proxy)
    png = keep(shot)
    assert png.startswith(PNG) and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (1280, 1600)
    assert len(png) > 3 * BLANK_PAGE, len(png)  # text and tables, not an empty page

    assert "<title>Remediator status</title>" in dom
    target = dom.split('<section class="target" id="policy-api-cpu">')[1].split("</section>")[0]
    assert "api-cpu" in target and APP_ID in target
    decision = target.split("<h3>Last decision</h3>")[1].split("<h3>")[0]
    assert "scaleOut" in decision and "deny" in decision
    assert "cooldown: last action (scaleOut) 4m28s ago; cooldown is 5m" in decision
    assert "succeeded" in target.split("<h3>Last action</h3>")[1].split("<h3>")[0]
    assert "Recent audit lines" in dom
    assert proxy.requests == []  # nothing beyond the page's own loopback server
