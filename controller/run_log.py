"""The lines ``remediator run`` logs when it starts and stops, so whoever reads the log
knows what the controller was doing: above all, whether it was allowed to change Azure."""

from __future__ import annotations

import signal

import structlog

from controller.config import Settings
from controller.model import Mode

log = structlog.get_logger("remediator.run")


def started(settings: Settings, policies: int) -> None:
    """One line: mode, policies, endpoints, audit log; a warning when live."""
    address = settings.listen_address
    fields = {
        "mode": settings.mode.value,
        "policies": policies,
        "listen": "off" if address is None else f"{address[0]}:{address[1]}",
        "audit": str(settings.audit_path),
    }
    if settings.mode is Mode.LIVE:
        log.warning("controller started: LIVE, actions change Azure resources", **fields)
    else:
        log.info("controller started: dry-run, nothing is changed", **fields)


def stopped(signum: int | None) -> None:
    """One line: why it stopped."""
    why = signal.Signals(signum).name if signum is not None else "its loop ended"
    log.info("controller stopped", reason=why)
