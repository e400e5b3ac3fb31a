"""`remediator backtest` on the emulator's history, with two policy variants, and
`remediator record` then a backtest of the recording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e import test_emulator_and_run as run

emulator_config = run.emulator_config  # a running emulator (cpu-spike at 600x) + settings


def test_backtest_compares_two_policy_sets_on_the_emulators_history(
    emulator_config: tuple[Path, str], tmp_path: Path
) -> None:
    config, base = emulator_config
    # scenario time runs at 600x: wait until twenty minutes of history exist
    run.eventually(
        lambda: (s := run.get_json(f"{base}/_emulator/state")) and s["now"] >= "2026-01-01T00:21"
    )
    [policy_file] = config.with_name("settings.policies").iterdir()
    variant = yaml.safe_load(policy_file.read_text())
    variant["objectives"][0].update(comparison="<=", threshold=100)  # lenient: never breached
    variants = tmp_path / "variant"
    variants.mkdir()
    (variants / "lenient.yaml").write_text(yaml.safe_dump(variant))
    report = tmp_path / "report.html"
    proc = run.cli(
        "backtest",
        "--config", str(config),
        "--from", "2026-01-01T00:00:00Z",
        "--to", "2026-01-01T00:20:00Z",
        "--compare", str(variants),
        "--report", str(report),
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    strict, lenient = json.loads(out)["backtests"]
    [(name, acted)] = strict["targets"].items()
    assert acted["actions"].get("scaleOut", 0) >= 1 and acted["cost"]["total"] > 0
    assert lenient["targets"][name]["actions"] == {}
    html = report.read_text()
    assert html.count("<svg") >= 2 and name in html
    assert run.get_json(f"{base}/_emulator/state")["writes"] == 0  # a backtest changes nothing


def test_record_then_backtest_the_recording(
    emulator_config: tuple[Path, str], tmp_path: Path
) -> None:
    config, _ = emulator_config
    recording = tmp_path / "incident.jsonl"
    proc = run.cli("record", "--config", str(config), "--out", str(recording), "--duration", "2m")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = recording.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "remediator-recording/1"
    assert any('"objective": "cpu"' in line for line in lines)
    proc = run.cli("backtest", "--config", str(config), "--recording", str(recording))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["backtests"][0]["targets"]


def test_backtest_a_demo_scenario_with_a_variant(tmp_path: Path, capsys: object) -> None:
    """No Azure, no running emulator: the scenario's own history, its policies and a
    variant that steps in by scaling up instead."""
    from controller.cli import main
    from controller.emulator import load_scenario

    [policy] = load_scenario("cpu-spike").policies
    variant = {**policy, "remediation": [{"scaleUp": {"maxCpu": 2.0}}]}
    folder = tmp_path / "variant"
    folder.mkdir()
    (folder / "up.yaml").write_text(yaml.safe_dump(variant))
    report = tmp_path / "demo.html"
    code = main(
        ["backtest", "--scenario", "cpu-spike", "--compare", str(folder), "--report", str(report)]
    )
    assert code == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    outward, upward = json.loads(out)["backtests"]
    assert outward["targets"]["agentstudio-api-cpu"]["actions"] == {"scaleOut": 1}
    assert upward["targets"]["agentstudio-api-cpu"]["actions"] == {"scaleUp": 1}
    assert upward["targets"]["agentstudio-api-cpu"]["cost"]["total"] > 0
    assert "cpu-spike&#x27;s policies" in report.read_text()


def test_the_scenario_policies_can_be_kept_to_edit_into_a_variant(
    tmp_path: Path, capsys: object
) -> None:
    from controller.cli import main

    kept = tmp_path / "variant"
    assert main(["backtest", "--scenario", "cpu-spike", "--policies-out", str(kept)]) == 0
    [policy_file] = kept.glob("*.yaml")
    policy = yaml.safe_load(policy_file.read_text())
    assert policy["metadata"]["name"] == "agentstudio-api-cpu"
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert str(kept) in err
    # never mixed with older files, and only for a scenario
    assert main(["backtest", "--scenario", "cpu-spike", "--policies-out", str(kept)]) == 2
    assert main(["backtest", "--policies-out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "already holds policies" in err and "give --scenario too" in err


def test_a_bad_time_or_duration_is_a_usage_error(capsys: object) -> None:
    from controller.cli import main

    assert main(["backtest", "--scenario", "cpu-spike", "--from", "yesterday"]) == 2
    assert main(["record", "--out", "/dev/null", "--duration", "5x"]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "'yesterday' is not a time" in err and "--duration:" in err


def test_the_replays_audit_log_reads_like_the_controllers(tmp_path: Path, capsys: object) -> None:
    """--audit-out keeps what the replay decided as an audit log: its chain verifies,
    `report --audit` finds the same actions and denials, and it is never written over."""
    from controller.cli import main

    log = tmp_path / "replay-audit.jsonl"
    assert main(["backtest", "--scenario", "cpu-spike", "--audit-out", str(log)]) == 0
    replayed = json.loads(capsys.readouterr().out)["backtests"][0]  # type: ignore[attr-defined]
    assert main(["audit", "verify", str(log)]) == 0
    assert main(["report", "--audit", str(log), "--report", str(tmp_path / "r.html")]) == 0
    reported = json.loads(capsys.readouterr().out.splitlines()[-1])["backtests"][0]  # type: ignore[attr-defined]
    [(name, summary)] = replayed["targets"].items()
    assert reported["targets"][name]["actions"] == summary["actions"] == {"scaleOut": 1}
    assert reported["targets"][name]["denied"] == summary["denied"]
    assert main(["backtest", "--scenario", "cpu-spike", "--audit-out", str(log)]) == 2


def test_a_saturated_cpu_is_flagged_in_the_output_and_both_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cpu-spike records 160 % of demand as 100 %: the replay's one scale-out (the demo
    needed two) comes with a warning on stderr, in the JSON and under the chart; the
    report of its audit log says the same from the values the log recorded."""
    from controller.cli import main

    report, log = tmp_path / "replay.html", tmp_path / "replay.jsonl"
    args = ["backtest", "--scenario", "cpu-spike", "--report", str(report), "--audit-out", str(log)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    target = json.loads(out)["backtests"][0]["targets"]["agentstudio-api-cpu"]
    assert target["actions"] == {"scaleOut": 1}
    [warning] = target["warnings"]
    assert warning.startswith("cpu: CpuPercentage read 100 %")
    assert f"warning: cpu-spike's policies: agentstudio-api-cpu: {warning}" in err
    assert '<p class="warning" data-objective="cpu">Saturated: ' in report.read_text()
    audit_report = tmp_path / "audit.html"
    assert main(["report", "--audit", str(log), "--report", str(audit_report)]) == 0
    out, err = capsys.readouterr()
    # without --config the log does not say what cpu measures: its flat top at 100 says it
    assert f"{log}: agentstudio-api-cpu: cpu: cpu held its recorded maximum 100 for" in err
    assert '<p class="warning" data-objective="cpu">Saturated: ' in audit_report.read_text()
