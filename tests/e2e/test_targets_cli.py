"""`remediator targets`: what each policy covers now, asked of Resource Graph."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.emulator import load_scenario
from tests.e2e.test_emulator_and_run import cli, eventually, free_port

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
