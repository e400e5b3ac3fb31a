"""A real Prometheus on loopback, scraping a tiny exporter whose values the test sets.

Prometheus is found as ``$PROMETHEUS_BIN`` or on ``PATH`` (Debian's ``prometheus``
package installs ``/usr/bin/prometheus``); without it the tests that need it are
skipped, saying why — except in CI (``CI`` set), where a missing binary fails them.

The exporter is an aiohttp app on a thread of its own, so it lives for the whole
session, independent of each test's event loop; Prometheus scrapes it every second.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

STARTUP = 20.0  # seconds Prometheus may take to become ready
POLL = 0.05  # seconds between polls of an external server


def prometheus_binary() -> str | None:
    candidates = [os.environ.get("PROMETHEUS_BIN"), shutil.which("prometheus")]
    return next((c for c in candidates if c and Path(c).exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Exporter:
    """Serves ``/metrics`` in the text exposition format; ``values`` is what it says."""

    values: dict[str, float] = field(default_factory=dict)  # 'name{label="v"}' → value
    address: str = ""  # host:port, once serving

    def exposition(self) -> str:
        return "".join(f"{series} {value!r}\n" for series, value in dict(self.values).items())


@contextmanager
def exporter() -> Iterator[Exporter]:
    """Run an :class:`Exporter` on 127.0.0.1 (a free port) on a thread with its own loop."""
    state = Exporter()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="exporter", daemon=True)
    thread.start()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=state.exposition(), content_type="text/plain")

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    started: Future[web.AppRunner] = asyncio.run_coroutine_threadsafe(start(), loop)
    runner = started.result(timeout=10)
    host, port = runner.addresses[0][:2]
    state.address = f"{host}:{port}"
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ['{target}']
"""


@contextmanager
def prometheus(workdir: Path, target: str, rules: Path | None = None) -> Iterator[str]:
    """Run Prometheus scraping ``target`` (host:port) every second, evaluating ``rules``
    (an alert rule file) as often; yield its base URL."""
    binary = prometheus_binary()
    assert binary is not None
    config = workdir / "prometheus.yml"
    text = CONFIG.format(target=target)
    if rules is not None:
        text += f"rule_files:\n  - '{rules}'\n"
    config.write_text(text)
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                said = (workdir / "prometheus.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus did not become ready:\n{said}")
            time.sleep(POLL)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Stack:
    url: str  # Prometheus' base URL
    exporter: Exporter


@pytest.fixture(scope="session")
def prometheus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Prometheus and one exporter for the whole session (startup is the slow part)."""
    if prometheus_binary() is None:
        reason = "prometheus is not installed (apt-get install prometheus, or set PROMETHEUS_BIN)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with (
        exporter() as served,
        prometheus(tmp_path_factory.mktemp("prometheus"), served.address) as url,
    ):
        yield Stack(url, served)
