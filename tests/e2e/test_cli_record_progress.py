"""A long `remediator record` shows that it lives: a progress line on stderr after the
first pass and then every minute of the recording's clock."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_emulator_and_run import cli, emulator_config

__all__ = ["emulator_config"]  # the fixture, used below


def test_record_prints_progress(emulator_config: tuple[Path, str], tmp_path: Path) -> None:
    config, _ = emulator_config  # scenario time at 600x: 5 minutes pass in half a second
    out = tmp_path / "rec.jsonl"
    proc = cli("record", "--config", str(config), "--out", str(out), "--duration", "5m")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    progress = [line for line in stderr.splitlines() if line.startswith("record: pass ")]
    assert len(progress) >= 3, stderr
    assert progress[0].startswith("record: pass 1, ") and "to go" in progress[0]
    assert "recorded" in stdout
