"""The status page in a real browser: it renders from loopback alone, nothing external."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from aiohttp import web

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.server import serving
from controller.status_page import CONTENT_SECURITY_POLICY, CSS
from tests.chromium import (
    BLANK_PAGE,
    PNG,
    console,
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
        messages = await console(binary, base + "/", tmp_path / "console-profile", proxy)
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
    # its Content-Security-Policy blocked nothing it needs: no violation, no error
    assert messages == []


async def test_the_console_check_sees_what_the_policy_blocks(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The page's policy applied to a page with one more stylesheet than it allows: the
    console check reports the violation (so an empty console above means none)."""
    binary = require_chromium()

    async def extra_style(_: web.Request) -> web.Response:
        page = render_tampered()
        return web.Response(
            text=page,
            content_type="text/html",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    app = web.Application()
    app.router.add_get("/", extra_style)
    async with refusing_proxy() as proxy, serving(app, "127.0.0.1", 0) as base:
        messages = await console(binary, base + "/", tmp_path / "profile", proxy)
    assert len(messages) == 1 and "Content Security Policy" in messages[0], messages


def render_tampered() -> str:
    """A page with the allowed stylesheet and one that is not."""
    return (
        f"<!doctype html><html><head><style>{CSS}</style><style>body{{color:red}}</style>"
        "</head><body><p>x</p></body></html>"
    )
