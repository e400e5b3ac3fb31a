"""Ctrl-C, as a person presses it: every long-running command ends with exit 130 and one
line, no traceback; `run` says when it starts (mode, policies, endpoints, audit log) and
when it stops."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_emulator_and_run import cli, emulator_config, eventually, free_port, get_json

__all__ = ["emulator_config"]  # the fixture, used below


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return out, err


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline()


@pytest.mark.parametrize(
    "args",
    [
        ("demo",),
        ("demo", "--linger", "60", "--listen", "127.0.0.1:0"),
        ("emulator", "--port", "0"),
    ],
    ids=["demo", "demo-linger", "emulator"],
)
def test_ctrl_c_exits_130_with_one_line(args: tuple[str, ...]) -> None:
    proc = cli(*args)
    assert first_line(proc)  # started: the demo's banner, the emulator's address
    _, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert err.strip() == f"remediator {args[0]}: interrupted"


def test_run_logs_its_start_and_stop_and_exits_130_on_ctrl_c(
    emulator_config: tuple[Path, str],
) -> None:
    config, _ = emulator_config
    listen = f"127.0.0.1:{free_port()}"
    proc = cli(
        "run",
        "--config",
        str(config),
        env={
            "REMEDIATOR_LISTEN": listen,
            "REMEDIATOR_MODE": "live",
            "REMEDIATOR_LOG_LEVEL": "info",
        },
    )
    eventually(lambda: get_json(f"http://{listen}/healthz"))
    _, err = interrupt(proc)
    assert proc.returncode == 130, err
    [start] = [line for line in err.splitlines() if "controller started" in line]
    assert "LIVE" in start and "policies=1" in start and f"listen={listen}" in start
    assert "audit=" in start and "warning" in start
    [stop] = [line for line in err.splitlines() if "controller stopped" in line]
    assert "SIGINT" in stop
    assert "Traceback" not in err
