"""Headless Chromium, for the tests that look at a page as a browser renders it.

Chromium is found as ``$CHROMIUM_BIN`` or ``chromium`` on ``PATH`` (Debian's ``chromium``
package installs ``/usr/bin/chromium``); without it those tests are skipped, saying why
— except in CI (``CI`` set), where a missing binary fails them.

Each run gets a fresh profile, its background networking off, and a proxy on loopback
that refuses and records every request: a page that needed anything beyond the loopback
server it came from would show it there, and could not load it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

NOWHERE = "http://127.0.0.1:9/"  # the discard port, closed: connections are refused
# the browser's own, whatever the page: its default search engine's start-up check (no flag
# turns it off); refused like the rest, but not counted as the page's
BROWSER_OWN = frozenset({"CONNECT www.google.com:443 HTTP/1.1"})
TIMEOUT = 20.0  # wall seconds one Chromium run may take (it takes about one here)
FLAGS = (  # tooling.md: without the background-networking flags it calls home
    "--headless",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    # what it still asks Google for at start-up, sent to a closed loopback port instead
    "--disable-features=NetworkTimeServiceQuerying,PreconnectToSearch",
    f"--component-updater=url-source={NOWHERE}",
    f"--gaia-url={NOWHERE}",
)


def chromium_binary() -> str | None:
    candidates = [os.environ.get("CHROMIUM_BIN"), shutil.which("chromium")]
    return next((c for c in candidates if c and Path(c).exists()), None)


def require_chromium() -> str:
    """The binary; skips the test without one, or fails it in CI."""
    binary = chromium_binary()
    if binary is None:
        reason = "chromium is not installed (apt-get install chromium, or set CHROMIUM_BIN)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


@dataclass
class Proxy:
    """Where Chromium must send anything not for loopback; what it was asked for."""

    address: str = ""
    requests: list[str] = field(default_factory=list)


@asynccontextmanager
async def refusing_proxy() -> AsyncIterator[Proxy]:
    """An HTTP proxy on 127.0.0.1 that answers every request 502 and notes its first line."""
    proxy = Proxy()

    async def refuse(stream: SocketStream) -> None:
        async with stream:
            with anyio.move_on_after(5):
                first = (await stream.receive(4096)).split(b"\r\n", 1)[0].decode("latin-1")
                if first not in BROWSER_OWN:
                    proxy.requests.append(first)
                await stream.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    proxy.address = f"127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, refuse)
        yield proxy
        tg.cancel_scope.cancel()


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: bytes
    stderr: bytes


def _run(argv: list[str], timeout: float) -> Run:
    """Run Chromium in a session of its own, so a timeout ends it and its helpers."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"chromium took over {timeout:g}s: {err[-2000:]!r}") from None
    return Run(proc.returncode, out, err)


async def chromium(binary: str, url: str, profile: Path, proxy: Proxy, *args: str) -> Run:
    """One headless run on a fresh profile, in a worker thread: the event loop (and the
    server Chromium is loading from) keeps running meanwhile."""
    argv = [
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--proxy-server=http://{proxy.address}",
        "--proxy-bypass-list=127.0.0.1",  # the page's own server; nothing else
        *args,
        url,
    ]
    run = await anyio.to_thread.run_sync(partial(_run, argv, TIMEOUT))
    assert run.returncode == 0, run.stderr[-2000:]
    return run


async def screenshot(
    binary: str, url: str, out: Path, proxy: Proxy, size: tuple[int, int] = (1280, 1600)
) -> None:
    profile = out.with_name(out.stem + "-profile")
    await chromium(
        binary, url, profile, proxy, f"--screenshot={out}", f"--window-size={size[0]},{size[1]}"
    )


async def dump_dom(binary: str, url: str, profile: Path, proxy: Proxy) -> str:
    """The DOM as Chromium rendered it."""
    run = await chromium(binary, url, profile, proxy, "--dump-dom")
    return run.stdout.decode("utf-8")


async def console(binary: str, url: str, profile: Path, proxy: Proxy) -> list[str]:
    """What the page wrote to the browser console while it loaded: errors, and every
    Content-Security-Policy violation (Chromium reports each one there)."""
    run = await chromium(
        binary, url, profile, proxy, "--enable-logging=stderr", "--v=0", "--dump-dom"
    )
    lines = run.stderr.decode("utf-8", "replace").splitlines()
    return [line.split("] ", 1)[-1] for line in lines if ":CONSOLE" in line]


PNG = b"\x89PNG\r\n\x1a\n"
BLANK_PAGE = 9_400  # bytes: what Chromium's screenshot of an empty page at this size takes


def keep(shot: Path) -> bytes:
    """The screenshot's bytes, copied to ``$REMEDIATOR_SCREENSHOT_DIR`` when that is set."""
    if os.environ.get("REMEDIATOR_SCREENSHOT_DIR"):
        folder = Path(os.environ["REMEDIATOR_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / shot.name)
    return shot.read_bytes()
