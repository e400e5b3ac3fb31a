"""Scenario files for tests: the agentstudio-api app of the examples, with a timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.emulator import Scenario, load_scenario

APP_SCENARIO = """\
name: {name}
description: {description}
start: "2026-01-01T00:00:00Z"
duration: {duration}
subscription: 00000000-0000-0000-0000-000000000001
resources:
  - type: containerApp
    resourceGroup: rg-agentstudio-prod
    name: agentstudio-api
    location: eastus
    minReplicas: 1
    maxReplicas: 10
    revision: agentstudio-api--r1
    containers:
      - {{name: api, image: agentstudio/api:1.4.2, cpu: 0.5, memory: 1Gi}}
    workload: {workload}
timeline:
{timeline}
policies: []
"""


def app_scenario(
    folder: Path,
    name: str,
    timeline: list[str],
    *,
    description: str = "a test scenario",
    duration: str = "2h",
    workload: str = "{cpuDemandCores: 0.2, baseMemoryMiB: 300}",
) -> Scenario:
    """Write and load a one-app scenario; ``timeline`` holds flow mappings without ``resource``."""
    lines = "\n".join(
        "  - {" + entry.strip("{} ") + ", resource: agentstudio-api}" for entry in timeline
    )
    path = folder / f"{name}.yaml"
    path.write_text(
        APP_SCENARIO.format(
            name=name,
            description=description,
            duration=duration,
            workload=workload,
            timeline=lines,
        )
    )
    return load_scenario(path)


FLEET_APP = """\
  - type: containerApp
    resourceGroup: rg-agentstudio-prod
    name: app-{i}
    location: eastus
    minReplicas: 1
    maxReplicas: 10
    revision: app-{i}--r1
    containers: [{{name: api, image: x:1, cpu: 0.5, memory: 1Gi}}]
    workload: {{cpuDemandCores: {demand}, baseMemoryMiB: 300}}
"""


def fleet_target(i: int, region: str | None) -> dict[str, Any]:
    """The policy target of ``app-i`` in :func:`fleet_scenario`; batched when ``region``."""
    target: dict[str, Any] = {
        "type": "containerApp",
        "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/"
        f"rg-agentstudio-prod/providers/Microsoft.App/containerApps/app-{i}",
    }
    if region:
        target["region"] = region
    return target


def fleet_scenario(
    folder: Path, demands: list[float], timeline: list[str] | None = None
) -> Scenario:
    """Apps ``app-0`` … in one region, app ``i`` with ``demands[i]`` cores of CPU demand;
    ``timeline`` entries are full flow mappings (they name their app)."""
    apps = "".join(FLEET_APP.format(i=i, demand=d) for i, d in enumerate(demands))
    entries = "".join(f"  - {entry}\n" for entry in timeline or [])
    path = folder / "fleet.yaml"
    path.write_text(
        'name: fleet\ndescription: apps in one region\nstart: "2026-01-01T00:00:00Z"\n'
        "duration: 1h\nsubscription: 00000000-0000-0000-0000-000000000001\n"
        f"resources:\n{apps}timeline:\n{entries or '  []'}\npolicies: []\n"
    )
    return load_scenario(path)
