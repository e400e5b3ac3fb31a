"""Settling an interrupted action: did the change land? Decided from the resource alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.model import ResourceState


def landed(action: str, intended: Mapping[str, Any], state: ResourceState) -> bool | None:
    """True if ``state`` shows the intended change, False if not, None if it cannot show it."""
    if action == "scaleOut":
        return state.min_replicas >= int(intended.get("minReplicas", 0))
    if action == "scaleUp":
        for container in state.containers:
            if container.name == intended.get("container"):
                return container.cpu >= float(intended.get("cpu", 0))
        return False
    return None  # a restart leaves no mark on the app's configuration
