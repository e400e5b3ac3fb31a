"""The status page in a real browser: it renders from loopback alone, nothing external."""

from __future__ import annotations

import io
import random
import re
import struct
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from PIL import Image

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.policy.loader import LoadedPolicy
from controller.runtime import open_runtime
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
from tests.conftest import APP_ID, START, emulator_settings, make_policy
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


# the track's own colours (the page's CSS): no other part of the page uses them
OBJECTIVE_BLUE = (0x25, 0x63, 0xEB)
CAPACITY_AMBER = (0xD9, 0x77, 0x06)


@asynccontextmanager
async def controller_waiting_for_approval(
    tmp_path: Path, clock: VirtualClock, base_url: str
) -> AsyncIterator[str]:
    """The cpu spike, live, with a ladder of scaleOut to 2 replicas and then a scaleUp an
    operator must approve; 16 virtual minutes in, while the metrics backend fails (the
    scenario's fault from 15m to 17m). Served as the CLI serves it (``Runtime.app``)."""
    settings = emulator_settings(base_url, tmp_path, mode="live")
    policy = make_policy(
        remediation=[
            {"scaleOut": {"step": 1, "maxReplicas": 2}},
            {"scaleUp": {"maxCpu": 2.0, "approval": "required"}},
        ]
    )
    async with (
        open_runtime(
            settings, clock=clock, policies=[LoadedPolicy(policy, "test", 1)], rng=random.Random(1)
        ) as runtime,
        serving(runtime.app(), "127.0.0.1", 0) as base,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=16), sleepers=1)
        yield base
        tg.cancel_scope.cancel()


async def test_chromium_shows_what_changed_and_what_waits(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The fleet's summary, the target's capacity and its last action's before → after,
    the capacity/objective track (inline SVG, drawn: its colours are in the screenshot),
    the pending approval in words with its expiry and commands, and why a verdict is
    unknown — rendered by Chromium with nothing blocked and nothing fetched."""
    binary = require_chromium()
    shot = tmp_path / "status-page-changes.png"
    async with (
        refusing_proxy() as proxy,
        controller_waiting_for_approval(tmp_path, clock, emulator[1]) as base,
    ):
        await screenshot(binary, base + "/", shot, proxy, (1280, 1000))
        dom = await dump_dom(binary, base + "/", tmp_path / "dom-profile", proxy)
        messages = await console(binary, base + "/", tmp_path / "console-profile", proxy)
    png = keep(shot)
    assert png.startswith(PNG) and struct.unpack(">II", png[16:24]) == (1280, 1000)
    assert len(png) > 3 * BLANK_PAGE, len(png)
    assert proxy.requests == [] and messages == []  # the policy blocked nothing

    fleet = dom.split('<section id="fleet">')[1].split("</section>")[0]
    for figure in ("1</b>targets", "1</b>in breach", "1</b>unknown", "1</b>pending approvals"):
        assert figure in fleet, figure
    assert "0</b>open breakers" in fleet and "live</b>mode" in fleet

    target = dom.split('<section class="target" id="policy-api-cpu">')[1].split("</section>")[0]
    assert APP_ID in target
    assert "Capacity: 2–10 replicas (2 running); api 0.5 CPU / 1Gi" in target
    assert re.search(
        r"Last action: scaleOut minReplicas 1 → 2 \(succeeded, 2026-01-01 00:0", target
    )
    assert re.search(r'<p class="cause">.*cpu: signal failed: HTTP 500', target)

    approval = target.split('<div class="approval">')[1].split("</div>")[0]
    request = re.search(
        r"<b>Approval ([0-9a-f]{8})</b>: scaleUp cpu 0.5 → 0.75, memory 1Gi → 1.5Gi", approval
    )
    assert request, approval
    asked = re.search(
        r"requested 2026-01-01 (00:1\d:\d\d) UTC; expires 2026-01-01 (00:\d\d:\d\d) UTC", approval
    )
    assert asked, approval
    h, m, sec = map(int, asked[1].split(":"))
    assert asked[2] == f"{h:02d}:{m + 30:02d}:{sec:02d}"  # the policy's approvalTtl, 30m
    assert f"<kbd>remediator approve {request[1]} --config SETTINGS</kbd>" in approval
    assert f"<kbd>remediator reject {request[1]} --config SETTINGS</kbd>" in approval

    svg = target.split('<svg class="track"')[1].split("</svg>")[0]
    assert '<polyline class="o0"' in svg and '<polyline class="cap"' in svg
    levels = {
        y
        for _, y in re.findall(
            r"([\d.]+),([\d.]+)", svg.split('class="cap" points="')[1].split('"')[0]
        )
    }
    assert len(levels) == 2  # one replica, then two: the step scaleOut made
    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = Counter({colour: n for n, colour in image.getcolors(maxcolors=1 << 24) or []})
    assert pixels[OBJECTIVE_BLUE] > 100 and pixels[CAPACITY_AMBER] > 100, (
        pixels[OBJECTIVE_BLUE],
        pixels[CAPACITY_AMBER],
    )
