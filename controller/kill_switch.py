"""The kill switch: any of four hands can stop every action, within one interval.

1. ``REMEDIATOR_PAUSE=true`` (the ``pause`` setting) — for the whole controller;
2. the pause file (``remediator pause`` writes it, ``remediator resume`` removes it) —
   survives restarts, so a paused controller comes back paused;
3. the tag ``remediator-pause=true`` on a target — pauses that app alone;
4. the same tag on the target's resource group — pauses everything in it.

It is checked on every pass that would act, and the first switch found is the reason
every proposal is denied. Observation, evaluation and the audit carry on while paused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from controller.actions.container_apps import split_id
from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.config import Settings
from controller.model import ResourceState

PAUSE_TAG = "remediator-pause"


def tagged(tags: object) -> bool:
    return isinstance(tags, dict) and str(tags.get(PAUSE_TAG, "")).strip().lower() == "true"


class KillSwitch:
    """Answers "is acting paused for this target, and by what?"."""

    def __init__(self, settings: Settings, clients: AzureClients, clock: Clock) -> None:
        self._settings = settings
        self._clients = clients
        self._clock = clock

    async def reason(self, state: ResourceState) -> str | None:
        if self._settings.pause:
            return "paused by REMEDIATOR_PAUSE"
        file = self._settings.pause_path
        if file.exists():
            return f"paused by {file}" + _why(file)
        if tagged(state.tags):
            return f"paused by the tag {PAUSE_TAG}=true on the app"
        sub, group, _ = split_id(state.resource_id)
        client = await self._clients.resources(sub)
        rg = await retry.call(self._clock, lambda: client.resource_groups.get(group))
        if tagged(rg.tags):
            return f"paused by the tag {PAUSE_TAG}=true on resource group {group}"
        return None


def _why(file: Path) -> str:
    try:
        note = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    reason = note.get("reason") if isinstance(note, dict) else None
    return f" ({reason})" if reason else ""


def pause(path: Path, reason: str | None) -> None:
    """Write the pause file; it outlives the process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    note = {"pausedAt": datetime.now(UTC).isoformat(), "reason": reason}
    path.write_text(json.dumps(note) + "\n", encoding="utf-8")


def resume(path: Path) -> bool:
    """Remove the pause file; False if there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
