"""A signal that cannot be read is not "nothing to do": `plan` and `run --once` name the
cause and exit 3, and the audit line (`audit show`) and the log carry it."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from tests.e2e.test_emulator_and_run import cli, eventually, free_port

CAUSE = "cpu: signal failed: HTTP 500 InternalServerError"


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """An emulator (cpu-spike), the settings pointing at it, and its address."""
    for name in [k for k in os.environ if k.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "settings.yaml"
    port = free_port()
    proc = cli("emulator", "--port", str(port), "--write-config", str(config))
    try:
        eventually(lambda: config.exists() and "clock" in config.read_text())
        yield config, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def inject(base: str, kind: str) -> None:
    fault = urllib.request.Request(
        f"{base}/_emulator/faults",
        data=json.dumps({"kind": kind}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(fault, timeout=5) as response:
        assert json.loads(response.read())["active"] is True


def requests_to(base: str, part: str) -> int:
    with urllib.request.urlopen(f"{base}/_emulator/requests", timeout=5) as response:
        return sum(1 for r in json.loads(response.read()) if part in r["path"])


@pytest.fixture
def failing_metrics(emulator: tuple[Path, str]) -> Path:
    """An emulator (cpu-spike) whose metrics answer 500, and the settings pointing at it."""
    config, base = emulator
    inject(base, "metrics-error")
    return config


def test_plan_run_once_and_audit_show_name_the_failed_signal(
    failing_metrics: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = failing_metrics
    assert main(["plan", "--config", str(config)]) == 3
    table = capsys.readouterr().out
    [row] = [line for line in table.splitlines() if line.startswith("agentstudio-api-cpu")]
    assert " unknown " in row and row.endswith(f"no objective in breach (unknown); {CAUSE}")

    assert main(["plan", "--config", str(config), "--output", "json"]) == 3
    [result] = json.loads(capsys.readouterr().out)
    assert result["objectives"][0]["error"] == "HTTP 500 InternalServerError"

    assert main(["run", "--once", "--config", str(config)]) == 3
    out, err = capsys.readouterr()
    assert f"cpu=? unknown [{CAUSE}]" in out
    assert "warning" in err and CAUSE in err  # the log says it too, as a warning

    audit = config.with_name(config.stem + ".audit.jsonl")
    assert main(["audit", "show", str(audit)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert " verdict " in line and line.endswith(CAUSE)


def test_a_missing_role_is_named_and_not_retried(
    emulator: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 (the identity lost its role on the metrics) is not a blip: `plan` names it
    as Azure does and exits 3, after one request — asking again cannot grant a role."""
    config, base = emulator
    inject(base, "metrics-forbidden")
    before = requests_to(base, "etrics")
    assert main(["plan", "--config", str(config)]) == 3
    table = capsys.readouterr().out
    [row] = [line for line in table.splitlines() if line.startswith("agentstudio-api-cpu")]
    assert row.endswith("cpu: signal failed: HTTP 403 AuthorizationFailed")
    assert requests_to(base, "etrics") - before == 1


def test_a_resource_the_identity_may_not_read_fails_its_read(
    emulator: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without read on the Container App, the target cannot be read at all: `plan` exits 1
    and names the action the role lacks."""
    config, base = emulator
    inject(base, "arm-forbidden")
    assert main(["plan", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "AuthorizationFailed" in out and "Microsoft.App/containerApps/read" in out
