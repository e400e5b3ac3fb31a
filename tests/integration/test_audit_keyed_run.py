"""The controller seals its audit log with the configured key and anchors it elsewhere."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.log import AuditKeyError, check_file
from controller.clock import VirtualClock
from controller.emulator import Emulator
from tests.conftest import START, emulator_settings, make_policy
from tests.integration.helpers import run_controller

pytestmark = pytest.mark.anyio
KEY = "0123456789abcdef0123456789abcdef"


async def test_a_keyed_anchored_controller_keeps_a_log_only_the_key_verifies(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """auditKey (REMEDIATOR_AUDIT_KEY) seals every line; auditAnchor gets each line's
    (seq, hash); a restart without the key is refused rather than mixing modes."""
    _, base_url = emulator
    anchor = tmp_path / "other-storage" / "audit.anchor"
    settings = emulator_settings(
        base_url, tmp_path, mode="live", auditKey=KEY, auditAnchor=str(anchor)
    )
    records = await run_controller(settings, [make_policy()], clock, START + timedelta(minutes=10))
    assert records and all(r["mac"] == "hmac-sha256" for r in records)
    check = check_file(settings.audit_path, key=KEY.encode(), anchor=anchor)
    assert check.trusted and check.macs_checked and check.keyed_from == 1
    assert len(anchor.read_text().splitlines()) == len(records)
    unkeyed = emulator_settings(base_url, tmp_path, mode="live")
    with pytest.raises(AuditKeyError, match="sealed with a key"):
        await run_controller(unkeyed, [make_policy()], clock, START + timedelta(minutes=11))
