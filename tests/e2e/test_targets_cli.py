"""`remediator targets`: what each policy covers now, asked of Resource Graph."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.emulator import load_scenario
from tests.e2e.test_emulator_and_run import cli, eventually, free_port
from tests.e2e.test_signal_failure_cli import inject

API = [r for r in load_scenario("fleet").resources if r.tags.get("remediator/policy") == "api"]


@pytest.fixture
def fleet_config(tmp_path: Path) -> Iterator[Path]:
    """The fleet estate (300 apps) served by an emulator process, and its settings."""
    config = tmp_path / "settings.yaml"
    proc = cli(
        "emulator", "--port", str(free_port()), "--scenario", "fleet", "--write-config", str(config)
    )
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        yield config
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_targets_lists_what_the_selector_finds(fleet_config: Path) -> None:
    """Every app tagged for the api policy that exists now (app-299 is created at 20 min),
    each with its region from the graph; nothing acts, no audit log is opened."""
    done = cli("targets", "--config", str(fleet_config), "--output", "json")
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    body = json.loads(out)
    expected = {r.resource_id for r in API if r.created_at is None}
    assert body["perPolicy"] == {"api-cpu": len(expected)}
    assert {t["resourceId"] for t in body["targets"]} == expected
    assert {t["region"] for t in body["targets"]} == {"eastus", "westeurope"}
    assert body["refused"] == {} and body["problems"] == {}
    assert not list(fleet_config.parent.glob("*.audit.jsonl"))

    table = cli("targets", "--config", str(fleet_config))
    text, _ = table.communicate(timeout=60)
    assert table.returncode == 0
    assert (
        text.splitlines()[0].startswith("api-cpu (selector, ")
        and f"{len(expected)} target(s)" in text
    )


@pytest.fixture
def graph_failing(tmp_path: Path) -> Iterator[Path]:
    """The fleet estate whose Resource Graph answers 500 from the start."""
    config = tmp_path / "settings.yaml"
    port = free_port()
    proc = cli(
        "emulator", "--port", str(port), "--scenario", "fleet", "--write-config", str(config)
    )
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        inject(f"http://127.0.0.1:{port}", "graph-error")
        yield config
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_plan_and_a_single_pass_fail_when_a_selector_cannot_be_read(graph_failing: Path) -> None:
    """A selector whose discovery failed has no targets to plan: "nothing to do" would be a
    lie. `plan` and `run --once` name the policy and the cause and exit 1; the policy is
    listed with 0 targets; JSON on stdout stays the plan, the cause goes to stderr."""
    plan = cli("plan", "--config", str(graph_failing))
    out, _ = plan.communicate(timeout=60)
    assert plan.returncode == 1, out
    assert "targets by policy: api-cpu 0" in out
    assert "discovery not believed: policy 'api-cpu'" in out and "500" in out

    as_json = cli("plan", "--config", str(graph_failing), "--output", "json")
    out, err = as_json.communicate(timeout=60)
    assert as_json.returncode == 1
    assert json.loads(out) == []
    assert "discovery not believed: policy 'api-cpu'" in err

    once = cli("run", "--config", str(graph_failing), "--once")
    out, _ = once.communicate(timeout=60)
    assert once.returncode == 1
    assert "discovery not believed: policy 'api-cpu'" in out
