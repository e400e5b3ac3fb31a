"""Write the settings file that points a controller at a running emulator.

The clock anchor lets a controller in another process compute the same scenario
time as the emulator (scenario = anchorScenario + (wall - anchorWall) * speed).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .scenario import Scenario
from .timeutil import format_datetime, format_duration


def _file_name(policy: dict[str, Any], index: int) -> str:
    meta = policy.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)) if name else f"policy-{index}"
    return f"{index:02d}-{stem}.yaml"


EMULATOR_URL = "http://emulator"  # what scenario policies write for "this emulator"


def policies_for(scenario: Scenario, base_url: str) -> list[dict[str, Any]]:
    """The scenario's policies with ``http://emulator`` pointed at the running emulator
    (an HTTP probe of an app's health endpoint, for instance)."""

    def point(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(EMULATOR_URL):
            return base_url.rstrip("/") + value[len(EMULATOR_URL) :]
        if isinstance(value, dict):
            return {k: point(v) for k, v in value.items()}
        if isinstance(value, list):
            return [point(v) for v in value]
        return value

    return [point(policy) for policy in scenario.policies]


def write_settings(
    path: str | Path,
    *,
    base_url: str,
    scenario: Scenario,
    clock_anchor_wall: float,
    clock_anchor_scenario: datetime,
    speed: float,
    mode: str = "dry-run",
) -> Path:
    """Write ``path`` plus ``<stem>.policies/`` beside it; return the settings path."""
    settings_path = Path(path).resolve()
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    policies_dir = settings_path.with_name(f"{settings_path.stem}.policies")
    policies_dir.mkdir(exist_ok=True)
    for stale in policies_dir.glob("*.yaml"):  # a folder we generate: leave no old policies
        stale.unlink()
    for index, policy in enumerate(policies_for(scenario, base_url), start=1):
        (policies_dir / _file_name(policy, index)).write_text(
            yaml.safe_dump(policy, sort_keys=False), encoding="utf-8"
        )
    settings = {
        "mode": mode,
        "interval": format_duration(scenario.interval),
        "policies": str(policies_dir),
        "auditPath": str(settings_path.with_name(f"{settings_path.stem}.audit.jsonl")),
        "credential": "emulator",
        "cloud": "custom",
        "armEndpoint": base_url,
        "metricsEndpoint": base_url,
        "logsEndpoint": base_url,
        "listen": "127.0.0.1:9464",
        "clock": {
            "anchorWall": float(clock_anchor_wall),
            "anchorScenario": format_datetime(clock_anchor_scenario),
            "speed": float(speed),
        },
    }
    settings_path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return settings_path
