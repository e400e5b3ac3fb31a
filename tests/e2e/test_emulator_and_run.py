"""`remediator emulator --write-config` then `remediator plan` / `run --config`, as processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` (a few ms apart) until it gives a value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command as a process, with no REMEDIATOR_* variables but those given."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    return subprocess.Popen(
        [sys.executable, "-m", "controller", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**inherited, "REMEDIATOR_LOG_LEVEL": "warning", **(env or {})},
    )


@pytest.fixture
def emulator_config(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A running emulator (cpu-spike at 600x) and the settings file it wrote."""
    config = tmp_path / "settings.yaml"
    port = free_port()
    proc = cli("emulator", "--port", str(port), "--speed", "600", "--write-config", str(config))
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        yield config, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def run_until(config: Path, base: str, env: dict[str, str], done: Callable[[Any], bool]) -> Any:
    """Run the controller until the emulator's state satisfies ``done``; stop it with SIGTERM."""
    listen = f"127.0.0.1:{free_port()}"
    proc = cli("run", "--config", str(config), env={"REMEDIATOR_LISTEN": listen, **env})
    try:
        health = eventually(lambda: get_json(f"http://{listen}/healthz"))
        assert health["status"] == "ok"
        state = eventually(lambda: (s := get_json(f"{base}/_emulator/state")) and done(s) and s)
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=2) as response:
            exposition = response.read().decode()
        assert "remediator_reconcile_passes_total" in exposition
        assert "remediator-emulator-token" not in exposition  # no secret in the metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    return state, exposition


def audit_lines(config: Path) -> list[dict[str, Any]]:
    path = config.with_name(config.stem + ".audit.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plan_shows_each_target_and_objective(emulator_config: tuple[Path, str]) -> None:
    """`plan --output json` makes one dry-run pass and writes nothing anywhere."""
    config, base = emulator_config
    proc = cli("plan", "--config", str(config), "--output", "json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [row] = json.loads(out)
    assert row["policy"] == "agentstudio-api-cpu"
    assert row["objectives"][0]["objective"] == "cpu"
    assert get_json(f"{base}/_emulator/state")["writes"] == 0
    assert not config.with_name(config.stem + ".audit.jsonl").exists()


def test_run_in_dry_run_decides_but_writes_nothing(emulator_config: tuple[Path, str]) -> None:
    """As written, the settings are dry-run: the breach is decided as would-run, no write."""
    config, base = emulator_config

    def decided(_: Any) -> bool:
        path = config.with_name(config.stem + ".audit.jsonl")
        return path.exists() and "would-run" in path.read_text()

    state, exposition = run_until(config, base, {}, decided)
    assert state["writes"] == 0
    assert any(
        r["outcome"] == "would-run" and r["action"] == "scaleOut" for r in audit_lines(config)
    )
    would_run = re.search(
        r'remediator_actions_total\{action="scaleOut",outcome="would-run",'
        r'policy="agentstudio-api-cpu"\} (\S+)',
        exposition,
    )
    assert would_run and float(would_run[1]) >= 1, exposition


def test_run_live_scales_out(emulator_config: tuple[Path, str]) -> None:
    """With REMEDIATOR_MODE=live the same settings remediate for real, and stop on SIGTERM."""
    config, base = emulator_config

    def scaled(state: Any) -> bool:
        [app] = state["resources"].values()
        return bool(app["minReplicas"] >= 2)  # applied once the operation completed

    state, _ = run_until(config, base, {"REMEDIATOR_MODE": "live"}, scaled)
    assert state["writes"] >= 1
    assert any(r["outcome"] == "succeeded" for r in audit_lines(config))


def test_plan_reports_a_target_it_cannot_read_and_exits_1(tmp_path: Path) -> None:
    """A wrong resource ID shows as an error row, not an empty table, and the exit code says so."""
    config = tmp_path / "settings.yaml"
    port = free_port()
    proc = cli("emulator", "--port", str(port), "--write-config", str(config))
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        [policy_file] = (tmp_path / "settings.policies").iterdir()
        policy_file.write_text(policy_file.read_text().replace("agentstudio-api", "no-such-app"))
        plan = cli("plan", "--config", str(config), "--output", "json")
        out, err = plan.communicate(timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert plan.returncode == 1, err
    [row] = json.loads(out)
    assert row["verdict"] is None and "ResourceNotFound" in row["error"]
