"""Two controller processes on one audit log: the second exits at once, the log verifies."""

from __future__ import annotations

import signal
from pathlib import Path

from controller.audit.log import check_file
from tests.e2e.test_emulator_and_run import (
    cli,
    emulator_config,  # noqa: F401 (the fixture)
    eventually,
    free_port,
    get_json,
)


def test_a_second_controller_on_one_audit_log_exits_naming_the_lock(
    emulator_config: tuple[Path, str],  # noqa: F811
) -> None:
    """The second `remediator run` on the same auditPath exits 1 naming the lock and the
    first's pid; the first runs on, and its log verifies."""
    config, _ = emulator_config
    audit = config.with_name(config.stem + ".audit.jsonl")
    listen = f"127.0.0.1:{free_port()}"
    first = cli("run", "--config", str(config), env={"REMEDIATOR_LISTEN": listen})
    try:
        eventually(lambda: get_json(f"http://{listen}/healthz"))
        eventually(lambda: audit.exists() and audit.stat().st_size > 0)
        second = cli("run", "--config", str(config), env={"REMEDIATOR_LISTEN": "off"})
        try:
            _, err = second.communicate(timeout=30)
        finally:
            if second.poll() is None:  # it did not stop: a second writer is running
                second.kill()
                second.wait()
        assert second.returncode == 1, err
        assert f"{audit}.lock" in err and f"pid {first.pid}" in err
        assert first.poll() is None  # the holder is untouched
        size = audit.stat().st_size
        eventually(lambda: audit.stat().st_size > size, timeout=60)  # and writes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
    check = check_file(audit)
    assert check.ok and check.lines > 1, check.problem
