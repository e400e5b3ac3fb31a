"""The command line explains itself (--version, examples, exit codes) and keeps its codes."""

from __future__ import annotations

import argparse
import os
import socket
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from controller.cli import _parser, main
from tests.conftest import BASE_POLICY


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, groups (`audit`) and their subcommands (`audit show`) alike."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*path, name))
                found.extend(commands(sub, (*path, name)))
    return found


ALL = commands(_parser())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"remediator {version('remediator')}\n"


def test_the_commands_are_all_there() -> None:
    for expected in [("audit", "show"), ("audit", "verify"), ("config", "show"), ("schema",)]:
        assert expected in ALL


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_every_command_help_shows_an_example(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    examples = help_text.partition("\nexamples:\n")[2]
    assert f"remediator {' '.join(path)}" in examples, help_text


def test_top_level_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    codes = out.partition("exit codes:\n")[2]
    assert "0  success" in codes
    assert "1  failure" in codes and "broken audit chain" in codes
    assert "2  bad input" in codes and "usage" in codes
    assert "3  plan, run --once" in codes and "signal failed" in codes


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2


def test_a_file_that_cannot_be_written_is_a_failure_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pause` where a folder is a file: the command ran and could not do it, exit 1."""
    monkeypatch.delenv("REMEDIATOR_CONFIG", raising=False)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("REMEDIATOR_PAUSE_FILE", str(blocker / "remediator.pause"))
    assert main(["pause", "--reason", "test"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("remediator pause: ") and "Traceback" not in err


def test_audit_verify_of_a_file_that_is_not_text_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "audit.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["audit", "verify", str(binary)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_run_on_a_port_already_taken_is_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 1 naming the address: not a traceback of an exception group."""
    for name in [k for k in os.environ if k.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(BASE_POLICY))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "settings.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "credential": "emulator",
                    "cloud": "custom",
                    "armEndpoint": "http://127.0.0.1:9",
                    "metricsEndpoint": "http://127.0.0.1:9",
                    "policies": ["policy.yaml"],
                    "auditPath": "audit.jsonl",
                    "listen": f"127.0.0.1:{port}",
                }
            )
        )
        assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("remediator run: ") and str(port) in err


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_without_settings_says_where_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """A pause file guessed in the working folder pauses no controller: refused (exit 2),
    naming where it would have gone; with settings, the absolute path is printed."""
    for var in ("REMEDIATOR_CONFIG", "REMEDIATOR_PAUSE_FILE", "REMEDIATOR_AUDIT_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "--config" in err and str(tmp_path / "remediator.pause") in err
    assert not (tmp_path / "remediator.pause").exists()
    config = tmp_path / "settings.yaml"
    config.write_text("auditPath: state/audit.jsonl\n")
    assert main([command, "--config", str(config)]) == 0
    assert str(tmp_path / "state" / "remediator.pause") in capsys.readouterr().out


@pytest.mark.parametrize("command", [("demo",), ("emulator",), ("backtest",)])
def test_scenario_help_lists_the_scenarios(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("cpu-spike", "memory-leak", "bad-deploy", "flapping", "steady"):
        assert name in text.replace("- ", "-")


def test_a_recording_without_policies_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("REMEDIATOR_CONFIG", "REMEDIATOR_POLICIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    recording = tmp_path / "rec.jsonl"
    recording.write_text('{"format": "remediator-recording/1"}\n')
    assert main(["backtest", "--recording", str(recording)]) == 2
    err = capsys.readouterr().err
    assert "give --config" in err and "REMEDIATOR_POLICIES" in err and ":0:" not in err
