"""Container App JSON: render the ARM shape, and read a (patched) document back.

Rendering and parsing live together so that a GET, a merge patch and a re-parse
round-trip: whatever the emulator serves, it accepts back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .history import History
from .metered import Aggregates, MetricDef
from .metrics import APP_CATALOG, app_minute
from .revisions import LATEST, RequestSample, Revision, Revisions, RevisionSpec, with_image
from .scenario import ResourceSpec
from .timeutil import format_datetime
from .workload import AppConfig, AppModel, Container, Sample, consumption_pair_error

DAY, WEEK = timedelta(days=1), timedelta(days=7)


class PatchError(Exception):
    """A PATCH the resource provider would refuse (answered as 400 with ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class AppResource:
    """One emulated Container App: its scenario spec, live model and ARM-only fields."""

    spec: ResourceSpec
    model: AppModel
    tags: dict[str, str] = field(default_factory=dict)
    traffic: History[dict[str, int]] = field(init=False)
    version: int = 1  # bumped by every change that lands: the ETag
    modified_at: datetime | None = None  # systemData.lastModifiedAt (None: the scenario's start)
    modified_by_type: str = "User"
    created: datetime | None = None  # exists from then (None: since before the scenario)
    deleted: datetime | None = None  # gone from then (None: not deleted)

    revisions: Revisions = field(init=False)

    def exists(self, now: datetime) -> bool:
        """Whether ARM, Resource Graph and the metrics APIs know the app at ``now``."""
        return (self.created is None or self.created <= now) and (
            self.deleted is None or now < self.deleted
        )

    def __post_init__(self) -> None:
        start, config, spec = self.model.start, self.model.current, self.spec
        if spec.revisions:  # declared: multiple-revision mode
            items = [
                Revision(r.name, with_image(config, r.image), r, start - r.age, start - r.age)
                for r in spec.revisions
            ]
            traffic = {r.name: r.traffic_percent for r in spec.revisions if r.traffic_percent}
            newest = min(spec.revisions, key=lambda r: r.age)
            if spec.latest_traffic and newest.name in traffic:
                traffic[LATEST] = traffic.pop(newest.name)
        else:  # one active revision, and an older one deactivated when it took over
            old = self.old_revision_name
            items = [
                Revision(old, config, RevisionSpec(old), start - WEEK, start - WEEK, start - DAY),
                Revision(
                    spec.revision, config, RevisionSpec(spec.revision), start - DAY, start - DAY
                ),
            ]
            traffic = {LATEST: 100}
        self.revisions = Revisions(items, bool(spec.revisions), spec.revision_ready)
        self.traffic = History(start, traffic)

    @property
    def multiple(self) -> bool:
        """``activeRevisionsMode: Multiple``: several revisions active, traffic split."""
        return bool(self.spec.revisions)

    def weights_at(self, at: datetime) -> dict[str, int]:
        """Which revisions serve at ``at``, with their share of traffic in percent."""
        return self.revisions.weights(at, self.traffic.at(at))

    def serving_at(self, at: datetime) -> list[tuple[Revision, int]]:
        found = (
            (self.revisions.find(name), weight) for name, weight in self.weights_at(at).items()
        )
        return [(revision, weight) for revision, weight in found if revision is not None]

    def sample(self, minute: datetime) -> Sample:
        """The app's metrics for a minute: the load served by the revisions taking traffic,
        each with its own replicas and size; every active revision's replicas run."""
        serving = [(revision.config, weight) for revision, weight in self.serving_at(minute)]
        running = sum(r.config.replicas for r in self.revisions.items if r.active(minute))
        return self.model.sample(minute, serving, running)

    def requests(self, minute: datetime) -> RequestSample:
        """Application Insights' view of one minute: traffic split over revisions, each
        with its own error rate and latency; CPU saturation slows every request; a hung
        app fails them all."""
        demand = self.model.demand_at(minute)
        count = demand.requests_per_minute
        if self.model.hung(minute):
            return RequestSample(count, count, 30_000.0, 30_000.0, 100.0, count)
        serving = self.serving_at(minute)
        total = sum(weight for _, weight in serving) or 100
        error = p95 = 0.0
        for revision, weight in serving:
            error += revision.quality.error_rate_percent * weight / total
            p95 += revision.quality.p95_ms * weight / total
        cpu = self.sample(minute).cpu_percent
        slowdown = 1.0 + max(0.0, cpu - 85.0) / 15.0
        failed = count * error / 100
        return RequestSample(count, failed, p95 * slowdown, p95 * slowdown * 1.6, error / 2, failed)

    @property
    def etag(self) -> str:
        return f'"{self.version:08x}-0000-0100-0000-000000000000"'

    def changed(self, now: datetime, by_type: str) -> None:
        """Record a change that landed: a new ETag and systemData."""
        self.version += 1
        self.modified_at = now
        self.modified_by_type = by_type

    @property
    def resource_id(self) -> str:
        return self.spec.resource_id

    @property
    def latest_revision(self) -> str:
        """``latestRevisionName``: the newest revision, ready or not."""
        return self.revisions.latest.name

    @property
    def template(self) -> AppConfig:
        """``properties.template`` as it stands: the newest revision's."""
        return self.revisions.latest.config

    @property
    def old_revision_name(self) -> str:
        """An older, inactive revision, so "pick the latest active one" is a real choice."""
        name = f"{self.spec.name}--r0"
        return name if name != self.spec.revision else f"{self.spec.name}--r00"

    def revision_names(self) -> list[str]:
        return [r.name for r in self.revisions.items]

    # -- Metered ---------------------------------------------------------------------------

    @property
    def metrics_id(self) -> str:
        return self.spec.resource_id

    @property
    def namespace(self) -> str:
        return "Microsoft.App/containerApps"

    @property
    def location(self) -> str:
        return self.spec.location

    @property
    def catalog(self) -> Mapping[str, MetricDef]:
        return APP_CATALOG

    def minute(self, metric: MetricDef, at: datetime, dimensions: Mapping[str, str]) -> Aggregates:
        return app_minute(self.sample(at), metric)

    def dimension_value(self, dimension: str) -> str:
        return {
            "revisionname": self.latest_revision,
            "podname": f"{self.latest_revision}-0",
            "deploymentname": self.latest_revision,
        }.get(dimension, "unknown")


def containers_json(config: AppConfig) -> list[dict[str, Any]]:
    """Containers as stored: the fields sent, with resources as the model holds them."""
    return [
        {
            "name": c.name,
            "image": c.image,
            **json.loads(c.extra),
            "resources": {"cpu": c.cpu, "memory": c.memory},
        }
        for c in config.containers
    ]


def app_json(res: AppResource, now: datetime) -> dict[str, Any]:
    """The ContainerApp body (ContainerApps_Get.json shape, fields the controller reads):
    the template is the newest revision's; ``latestReadyRevisionName`` lags behind
    ``latestRevisionName`` while a new revision is provisioned."""
    config = res.template
    spec = res.spec
    created = res.model.start - timedelta(days=1)
    return {
        "id": spec.resource_id,
        "name": spec.name,
        "type": "Microsoft.App/containerApps",
        "location": spec.location,
        "tags": dict(res.tags),
        "systemData": {
            "createdBy": "operator@example.com",
            "createdByType": "User",
            "createdAt": format_datetime(created),
            "lastModifiedBy": "operator@example.com",
            "lastModifiedByType": res.modified_by_type,
            "lastModifiedAt": format_datetime(res.modified_at or created),
        },
        "properties": {
            "provisioningState": "Succeeded",
            "runningStatus": "Running",
            "managedEnvironmentId": (
                f"/subscriptions/{spec.subscription}/resourceGroups/{spec.resource_group}"
                f"/providers/Microsoft.App/managedEnvironments/{spec.resource_group}-env"
            ),
            "latestRevisionName": res.latest_revision,
            "latestReadyRevisionName": res.revisions.latest_ready(now).name,
            "configuration": configuration_json(res),
            "template": {
                "containers": containers_json(config),
                "scale": {
                    "minReplicas": config.min_replicas,
                    "maxReplicas": config.max_replicas,
                    "rules": [],
                },
            },
        },
    }


def configuration_json(res: AppResource) -> dict[str, Any]:
    """``properties.configuration``: revision mode, and the ingress traffic split (an entry
    on ``latestRevision: true`` follows the newest ready revision)."""
    if not res.multiple:
        return {"activeRevisionsMode": "Single"}
    weights = res.traffic.current
    return {
        "activeRevisionsMode": "Multiple",
        "ingress": {
            "external": True,
            "targetPort": 8080,
            "transport": "Auto",
            "traffic": [
                {"latestRevision": True, "weight": w}
                if n == LATEST
                else {"revisionName": n, "weight": w}
                for n, w in weights.items()
            ],
        },
    }


def traffic_from_json(doc: Any, res: AppResource) -> dict[str, int] | None:
    """The traffic split a merged body asks for (None when it does not mention one)."""
    props = doc.get("properties") if isinstance(doc, dict) else None
    config = props.get("configuration") if isinstance(props, dict) else None
    ingress = config.get("ingress") if isinstance(config, dict) else None
    traffic = ingress.get("traffic") if isinstance(ingress, dict) else None
    if traffic is None:
        return None
    if not res.multiple:
        raise PatchError(
            "ContainerAppInvalidTraffic",
            "Traffic can be split only when activeRevisionsMode is Multiple.",
        )
    weights: dict[str, int] = {}
    for item in traffic if isinstance(traffic, list) else [None]:
        latest = isinstance(item, dict) and item.get("latestRevision") is True
        name = item.get("revisionName") if isinstance(item, dict) else None
        weight = item.get("weight") if isinstance(item, dict) else None
        if latest and name is not None:
            raise PatchError(
                "ContainerAppInvalidTraffic",
                "A traffic entry names a revision or sets latestRevision, not both.",
            )
        if not latest and (not isinstance(name, str) or res.revisions.find(name) is None):
            raise PatchError("ContainerAppRevisionNotFound", f"Revision {name!r} was not found.")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise PatchError("ContainerAppInvalidTraffic", f"Bad traffic weight {weight!r}.")
        key = LATEST if latest else str(name)
        weights[key] = weights.get(key, 0) + weight
    if sum(weights.values()) != 100:
        raise PatchError("ContainerAppInvalidTraffic", "Traffic weights must add up to 100.")
    return {n: w for n, w in weights.items() if w}


def revision_json(res: AppResource, revision: Revision, now: datetime) -> dict[str, Any]:
    """A revision (Revisions_Get.json shape): its own template; provisioning until ready;
    its effective share of traffic."""
    active, ready = revision.active(now), revision.is_ready(now)
    config = revision.config
    return {
        "id": f"{res.resource_id}/revisions/{revision.name}",
        "name": revision.name,
        "type": "Microsoft.App/containerApps/revisions",
        "properties": {
            "createdTime": format_datetime(revision.created),
            "lastActiveTime": format_datetime(
                now if active else revision.deactivated or revision.created
            ),
            "template": {
                "containers": containers_json(config),
                "scale": {
                    "minReplicas": config.min_replicas,
                    "maxReplicas": config.max_replicas,
                },
            },
            "active": active,
            "replicas": config.replicas if active else 0,
            "trafficWeight": res.weights_at(now).get(revision.name, 0) if active else 0,
            "healthState": "Healthy" if active and ready else "None",
            "runningState": ("Running" if ready else "Processing") if active else "Stopped",
            "provisioningState": "Provisioned" if ready else "Provisioning",
        },
    }


def replicas_json(res: AppResource, revision: Revision, now: datetime) -> dict[str, Any]:
    """The replicas of a revision (ReplicaCollection shape; not paged): none once it is
    deactivated; not ready while it is provisioned."""
    if not revision.active(now):
        return {"value": []}
    config = revision.config
    restarts = len(revision.restarts)
    ready = revision.is_ready(now)
    name = revision.name
    return {
        "value": [
            {
                "id": f"{res.resource_id}/revisions/{name}/replicas/{name}-{i}",
                "name": f"{name}-{i}",
                "type": "Microsoft.App/containerApps/revisions/replicas",
                "properties": {
                    "createdTime": format_datetime(revision.created),
                    "runningState": "Running" if ready else "NotRunning",
                    "containers": [
                        {
                            "name": c.name,
                            "containerId": f"{name}-{i}-{c.name}",
                            "ready": ready,
                            "started": ready,
                            "restartCount": restarts,
                            "runningState": "Running" if ready else "Waiting",
                        }
                        for c in config.containers
                    ],
                },
            }
            for i in range(config.replicas)
        ]
    }


def _int(scale: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = scale.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PatchError(
            "ContainerAppInvalidScaleSpec",
            f"properties.template.scale.{key} must be an integer in {low}..{high}, got {value!r}",
        )
    return value


def config_from_json(doc: Any) -> tuple[AppConfig, dict[str, str]]:
    """Read the configuration (and tags) out of a full, already-merged ContainerApp body."""
    if not isinstance(doc, dict):
        raise PatchError("InvalidRequestContent", "The request body must be a JSON object.")
    props = doc.get("properties") or {}
    template = props.get("template") if isinstance(props, dict) else None
    if not isinstance(template, dict):
        raise PatchError("InvalidRequestContent", "properties.template must be an object.")
    scale = template.get("scale") or {}
    if not isinstance(scale, dict):
        raise PatchError("InvalidRequestContent", "properties.template.scale must be an object.")
    min_replicas = _int(scale, "minReplicas", 0, 0, 1000)
    max_replicas = _int(scale, "maxReplicas", 10, 1, 1000)
    if min_replicas > max_replicas:
        raise PatchError(
            "ContainerAppInvalidScaleSpec",
            f"minReplicas ({min_replicas}) must not exceed maxReplicas ({max_replicas}).",
        )
    raw_containers = template.get("containers")
    if not isinstance(raw_containers, list) or not raw_containers:
        raise PatchError(
            "InvalidParameterValueInContainerTemplate",
            "properties.template.containers must be a non-empty list.",
        )
    containers = []
    for raw in raw_containers:
        containers.append(_container(raw))
    tags = doc.get("tags") or {}
    if not isinstance(tags, dict):
        raise PatchError("InvalidRequestContent", "tags must be an object.")
    config = AppConfig(min_replicas, max_replicas, tuple(containers))
    return config, {str(k): str(v) for k, v in tags.items()}


def _container(raw: Any) -> Container:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise PatchError(
            "InvalidParameterValueInContainerTemplate", "Each container needs a 'name'."
        )
    name = raw["name"]
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise PatchError(
            "InvalidParameterValueInContainerTemplate",
            f"Container '{name}' has no 'image': arrays are replaced whole by a merge patch, "
            "so send every container in full.",
        )
    resources = raw.get("resources") or {}
    cpu = resources.get("cpu", 0.5) if isinstance(resources, dict) else None
    memory = resources.get("memory", "1Gi") if isinstance(resources, dict) else None
    if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not isinstance(memory, str):
        raise PatchError(
            "ContainerAppInvalidResourceTotal",
            f"Container '{name}': resources.cpu must be a number and resources.memory a string.",
        )
    problem = consumption_pair_error(float(cpu), memory)
    if problem:
        raise PatchError(
            "ContainerAppInvalidResourceTotal",
            f"The total requested CPU and memory resources for this application "
            f"(CPU: {cpu}, memory: {memory}) is invalid: {problem}. Total CPU and memory for "
            "all containers defined in a Container App must add up to one of the following "
            "CPU - Memory combinations: [cpu: 0.25, memory: 0.5Gi]; [cpu: 0.5, memory: 1.0Gi]; "
            "... [cpu: 4.0, memory: 8.0Gi]",
        )
    extra = {k: v for k, v in raw.items() if k not in ("name", "image", "resources")}
    return Container(name=name, image=image, cpu=float(cpu), memory=memory, extra=json.dumps(extra))
