"""`remediator demo --linger --listen`: the controller's endpoints outlive the scenario."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import timedelta

import pytest

from controller import cli
from controller.cli import main
from controller.clock import VirtualClock
from controller.demo import StoppedAt
from tests.conftest import START

COMMAND = (sys.executable, "-m", "controller")


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_endpoints_answer_while_the_demo_lingers_and_sigterm_ends_it() -> None:
    """Port 0 prints the bound URL; /healthz, /metrics and / answer after the scenario ended;
    SIGTERM ends the linger early and the summary still comes last, exit 0."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    proc = subprocess.Popen(
        [*COMMAND, "demo", "--instant", "--linger", "60", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**inherited, "REMEDIATOR_LOG_LEVEL": "warning"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # blocks until the demo says the scenario is over
            lines.append(line)
            if "stays up for 60s" in line:
                break
        assert lines and "stays up" in lines[-1], "".join(lines)
        url = lines[-1].split()[3].rstrip("/")
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert any(f"controller endpoints on {url}/" in line for line in lines)
        status, body = fetch(f"{url}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = fetch(f"{url}/metrics")
        assert status == 200
        assert 'remediator_reconcile_passes_total{policy="agentstudio-api-cpu"' in body
        allowed = re.search(
            r'remediator_decisions_total\{action="scaleOut",decision="allow",guard="",'
            r'policy="agentstudio-api-cpu"\} (\S+)',
            body,
        )
        assert allowed and float(allowed[1]) >= 1, body
        status, body = fetch(f"{url}/")  # the status page, on the runtime's own app
        assert status == 200 and "agentstudio-api-cpu" in body and "scaleOut" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["actions"]["scaleOut"] >= 1


def test_linger_prints_where_and_how_long(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: --linger alone serves on the default address (here a free port)."""
    monkeypatch.setattr(cli, "DEMO_LISTEN", "127.0.0.1:0")
    assert main(["demo", "--instant", "--scenario", "steady", "--linger", "0.01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    [serving] = [line for line in lines if "controller endpoints on" in line]
    [lingering] = [line for line in lines if "stays up for 0.01s" in line]
    assert serving.split()[4] == lingering.split()[3]
    assert json.loads(lines[-1])["scenario"] == "steady"


def test_no_endpoints_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --linger or --listen the demo binds nothing (a busy port cannot break it)."""
    assert main(["demo", "--instant", "--scenario", "steady"]) == 0
    assert "endpoints" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "args", [["--linger", "5", "--listen", "off"], ["--listen", "nowhere"], ["--linger", "-1"]]
)
def test_contradictory_or_bad_flags_are_bad_input(args: list[str]) -> None:
    try:
        code = main(["demo", "--instant", "--scenario", "steady", *args])
    except SystemExit as exit_:
        code = int(str(exit_.code))
    assert code == 2


@pytest.mark.anyio
async def test_scenario_time_stops_at_the_end_for_the_endpoints() -> None:
    """After the scenario nothing runs: /healthz must not see a loop gone stalled."""
    clock = VirtualClock(START)
    stopped = StoppedAt(clock, START + timedelta(minutes=1))
    await clock.advance(30)
    assert stopped.now() == START + timedelta(seconds=30)
    await clock.advance(300)
    assert stopped.now() == START + timedelta(minutes=1)
