"""`remediator audit repair`: a broken log carries on from its valid prefix, memory and all."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.log import AuditCorrupt, check_file, read_records
from controller.audit.replay import replay
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.model import OutcomeKind
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller

POLICY = make_policy(guards={"cooldown": "20m", "maxActionsPerHour": 10})


@pytest.mark.anyio
async def test_a_repaired_log_keeps_its_memory(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line after the scale-out is edited: the controller refuses to start, pointing to
    `audit repair`; the repair keeps the lines before it, moves the rest aside byte for
    byte and records itself; the next start still honours the scale-out's cooldown."""
    from controller.cli import main  # the command, as an operator runs it

    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path, mode="live")
    path = Path(settings.audit_path)
    first = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=10))
    assert emu.writes == 1
    acted = next(r["seq"] for r in first if r.get("outcome") == "succeeded")
    assert len(first) > acted + 1  # a line to break with lines after it: the middle
    raw = edit_line(path, acted)  # 0-based: line acted + 1

    with pytest.raises(AuditCorrupt, match=rf":{acted + 1}: audit chain broken"):
        await run_controller(settings, [POLICY], clock, START + timedelta(minutes=11))

    assert main(["audit", "repair", str(path), "--by", "alice"]) == 0
    assert f"kept lines 1..{acted}" in capsys.readouterr().out
    aside = set_aside_byte_for_byte(path, raw, acted)
    check = check_file(path, keep=True)
    assert check.trusted and check.lines == acted + 1
    repair = check.records[-1]
    assert repair["kind"] == "repair" and repair["seq"] == acted + 1
    assert repair["repair"]["first_bad"] == acted + 1
    assert repair["repair"]["moved_to"] == aside.name
    assert repair["repair"]["moved_lines"] == len(raw) - acted
    assert repair["repair"]["by"] == "alice"
    assert main(["audit", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"repair: line {acted + 1}" in out and aside.name in out

    memory = replay(read_records(path)).memory_of(POLICY.name, POLICY.target.resource_id)
    assert memory is not None  # the repair line adds nothing
    assert [a.outcome for a in memory.history] == [OutcomeKind.SUCCEEDED]
    second = await run_controller(settings, [POLICY], clock, START + timedelta(minutes=20))
    assert emu.writes == 1  # CPU is still high: without the memory it would scale again
    assert any(r.get("guard") == "cooldown" for r in second[acted + 1 :])
    assert check_file(path).trusted


def edit_line(path: Path, index: int) -> list[str]:
    """Change one line's reason, leaving its hash: the chain breaks there."""
    raw = path.read_text().splitlines(keepends=True)
    raw[index] = raw[index].replace('"reason": "', '"reason": "edited: ', 1)
    path.write_text("".join(raw))
    return raw


def set_aside_byte_for_byte(path: Path, raw: list[str], kept: int) -> Path:
    """The one aside file holds the lines from the bad one on, exactly as they were."""
    (aside,) = path.parent.glob(f"{path.name}.broken-*")
    prefix = "".join(raw[:kept]).encode()
    assert aside.read_bytes() == "".join(raw[kept:]).encode()
    assert path.read_bytes().startswith(prefix)
    return aside


def test_a_broken_log_at_start_points_to_repair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`remediator run` on a broken chain exits 1 naming the line and `audit repair`."""
    from controller.audit.log import AuditLog
    from controller.cli import main
    from tests.unit.test_audit_chain import record

    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit:
        for i in range(4):
            audit.append(record(i))
    lines = path.read_text().splitlines(keepends=True)
    fields = json.loads(lines[1])
    fields["reason"] = "edited"
    lines[1] = json.dumps(fields) + "\n"
    path.write_text("".join(lines))
    policies = Path(__file__).parents[2] / "policies"
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"auditPath: {path}\npolicies: [{policies}]\nlisten: 'off'\ncredential: emulator\n"
        "cloud: custom\narmEndpoint: http://127.0.0.1:9\nmetricsEndpoint: http://127.0.0.1:9\n"
    )
    assert main(["run", "--once", "--config", str(settings)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: audit chain broken" in err
    assert f"remediator audit repair {path}" in err
