"""Scenario files: load, validate strictly, and expose them as frozen values.

A scenario describes the fake estate (Container Apps and their workload), how the
workload changes over scenario time, which faults to inject when, and the policy
documents a controller should run against it. Mistakes are reported as
``FILE:LINE: message`` so a typo in a demo scenario is found at load time, not as a
puzzling metric an hour into a run.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cosmos import DEMAND_FIELDS as COSMOS_DEMAND_FIELDS
from .cosmos import CosmosSpec
from .cosmos import parse_spec as parse_cosmos
from .faults import FAULT_KINDS
from .redis import WORKLOAD_FIELDS as REDIS_FIELDS
from .redis import RedisSpec
from .redis import parse_spec as parse_redis
from .revisions import READY_AFTER, RevisionSpec
from .timeutil import parse_datetime, parse_duration
from .workload import consumption_pair_error

SCENARIO_DIR = Path(__file__).parent / "scenarios"

WORKLOAD_FIELDS = {
    "cpuDemandCores": "cpu_demand_cores",
    "baseMemoryMiB": "base_memory_mib",
    "leakMiBPerMinute": "leak_mib_per_minute",
    "cpuDemandPerReplicaCores": "cpu_demand_per_replica",
    "requestsPerMinute": "requests_per_minute",
    "hung": "hung",  # 1: the app stops answering until restarted
}


class ScenarioError(ValueError):
    """A scenario could not be loaded; the message starts with ``FILE:`` (and a line)."""


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    cpu: float
    memory: str


@dataclass(frozen=True)
class WorkloadSpec:
    cpu_demand_cores: float
    base_memory_mib: float
    leak_mib_per_minute: float = 0.0
    cpu_demand_per_replica: float = 0.0  # burnt by every replica: more replicas do not help
    requests_per_minute: float = 600.0


@dataclass(frozen=True)
class ResourceSpec:
    """One emulated Container App, as it is at scenario start."""

    type: str
    subscription: str
    resource_group: str
    name: str
    location: str
    min_replicas: int
    max_replicas: int
    revision: str
    containers: tuple[ContainerSpec, ...]
    workload: WorkloadSpec
    tags: dict[str, str] = field(default_factory=dict)
    revisions: tuple[RevisionSpec, ...] = ()  # declared: multiple-revision mode
    # how long a new revision (made by a template change) is provisioned before it is ready
    revision_ready: dt.timedelta = READY_AFTER
    # multiple mode: the newest declared revision's share is on ``latestRevision: true``
    latest_traffic: bool = False
    created_at: dt.timedelta | None = None  # exists from start + created_at (None: always)
    deleted_at: dt.timedelta | None = None  # gone from start + deleted_at (None: never)

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.App/containerApps/{self.name}"
        )


@dataclass(frozen=True)
class TimelineEvent:
    """At ``at`` after start, set these workload fields (snake_case names) on ``resource``."""

    at: dt.timedelta
    resource: str
    changes: dict[str, float]


@dataclass(frozen=True)
class FaultSpec:
    at: dt.timedelta
    duration: dt.timedelta | None
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    start: dt.datetime
    duration: dt.timedelta
    speed: float
    interval: dt.timedelta
    subscription: str
    resources: list[ResourceSpec]
    timeline: list[TimelineEvent]
    faults: list[FaultSpec]
    policies: list[dict[str, Any]]
    path: Path | None = None
    offers: list[CosmosSpec] = field(default_factory=list)  # Cosmos DB throughput offers
    caches: list[RedisSpec] = field(default_factory=list)  # Azure Cache for Redis

    def resource(self, name: str) -> ResourceSpec:
        for spec in self.resources:
            if spec.name == name:
                return spec
        raise KeyError(name)


# -- YAML with line numbers --------------------------------------------------------------


class _Map(dict[str, Any]):
    """A mapping that remembers the line it started on."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    data = _Map()
    data.line = node.start_mark.line + 1
    data.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    yield data
    data.update({str(k): v for k, v in loader.construct_mapping(node).items()})


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _plain(value: Any) -> Any:
    """Strip the line-tracking types so the value dumps as ordinary YAML/JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class _Checker:
    """Builds ScenarioErrors that name the file and, when known, the line."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, where: Any, message: str, key: str | None = None) -> ScenarioError:
        line = getattr(where, "line", 0)
        if key is not None and isinstance(where, _Map):
            line = where.key_lines.get(key, line)
        prefix = f"{self.file}:{line}" if line else self.file
        return ScenarioError(f"{prefix}: {message}")

    def mapping(self, value: Any, what: str, parent: Any) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(parent, f"{what} must be a mapping")
        return value

    def keys(
        self,
        node: _Map,
        what: str,
        required: AbstractSet[str],
        optional: AbstractSet[str] = frozenset(),
    ) -> None:
        unknown = sorted(set(node) - required - optional)
        if unknown:
            message = f"{what}: unknown key(s) {', '.join(map(str, unknown))}"
            raise self.fail(node, message, str(unknown[0]))
        missing = sorted(required - set(node))
        if missing:
            raise self.fail(node, f"{what}: missing key(s) {', '.join(missing)}")

    def string(self, node: _Map, key: str, what: str) -> str:
        value = node[key]
        if not isinstance(value, str) or not value:
            raise self.fail(node, f"{what}.{key} must be a non-empty string", key)
        return value

    def number(self, node: _Map, key: str, what: str, minimum: float = 0.0) -> float:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(node, f"{what}.{key} must be a number >= {minimum:g}", key)
        return float(value)

    def integer(self, node: _Map, key: str, what: str, low: int, high: int) -> int:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(node, f"{what}.{key} must be an integer in {low}..{high}", key)
        return value

    def duration(self, node: _Map, key: str, what: str) -> dt.timedelta:
        value = node[key]
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            raise self.fail(node, f"{what}.{key}: {exc}", key) from None


# -- public API --------------------------------------------------------------------------


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped with the emulator."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name, or any scenario file by path."""
    path = Path(name_or_path)
    text_name = str(name_or_path)
    if not path.is_file() and "/" not in text_name and not text_name.endswith((".yaml", ".yml")):
        path = SCENARIO_DIR / f"{text_name}.yaml"
        if not path.is_file():
            known = ", ".join(list_scenarios())
            raise ScenarioError(f"{text_name}: no such scenario (shipped: {known})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, file: str = "<scenario>") -> Scenario:
    """Validate scenario YAML text; ``file`` is only used in error messages."""
    check = _Checker(file)
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else file
        raise ScenarioError(f"{where}: invalid YAML: {exc}") from None
    root = check.mapping(doc, "scenario", None)
    check.keys(
        root,
        "scenario",
        {"name", "start", "duration", "subscription", "resources"},
        {"description", "speed", "interval", "timeline", "faults", "policies"},
    )
    name = check.string(root, "name", "scenario")
    description = str(root.get("description", ""))
    start_raw = root["start"]
    try:
        if isinstance(start_raw, dt.datetime):
            start = start_raw if start_raw.tzinfo else start_raw.replace(tzinfo=dt.UTC)
            start = start.astimezone(dt.UTC)
        else:
            start = parse_datetime(str(start_raw))
    except ValueError:
        raise check.fail(root, f"start: bad timestamp {start_raw!r}") from None
    duration = check.duration(root, "duration", "scenario")
    speed = check.number(root, "speed", "scenario", 0.001) if "speed" in root else 60.0
    interval = check.duration(root, "interval", "scenario") if "interval" in root else None
    subscription = check.string(root, "subscription", "scenario")

    resources_raw = root["resources"]
    if not isinstance(resources_raw, list) or not resources_raw:
        raise check.fail(root, "resources must be a non-empty list")
    resources: list[ResourceSpec] = []
    offers: list[CosmosSpec] = []
    caches: list[RedisSpec] = []
    for raw in resources_raw:
        node = check.mapping(raw, "resource", root)
        kind = node.get("type")
        if kind == "cosmosThroughput":
            offers.append(parse_cosmos(check, node, subscription))
        elif kind == "redisCache":
            caches.append(parse_redis(check, node, subscription))
        elif "count" in node:
            resources.extend(_fleet(check, node, subscription))
        else:
            resources.append(_resource(check, node, subscription))
    kinds = (
        {r.name: "containerApp" for r in resources}
        | {o.name: "cosmosThroughput" for o in offers}
        | {c.name: "redisCache" for c in caches}
    )
    if len(kinds) != len(resources) + len(offers) + len(caches):
        raise check.fail(root, "resources: duplicate resource names")

    timeline = [_timeline(check, e, kinds) for e in _list(check, root, "timeline")]
    faults = [_fault(check, f) for f in _list(check, root, "faults")]
    ids = (
        {r.resource_id.lower() for r in resources}
        | {o.resource_id.lower() for o in offers}
        | {c.resource_id.lower() for c in caches}
    )
    policies = _policies(check, root, ids)
    return Scenario(
        name=name,
        description=description,
        start=start,
        duration=duration,
        speed=speed,
        interval=interval or dt.timedelta(seconds=30),
        subscription=subscription,
        resources=resources,
        timeline=sorted(timeline, key=lambda e: e.at),
        faults=faults,
        policies=policies,
        path=Path(file) if file != "<scenario>" else None,
        offers=offers,
        caches=caches,
    )


def _list(check: _Checker, root: _Map, key: str) -> list[Any]:
    value = root.get(key) or []
    if not isinstance(value, list):
        raise check.fail(root, f"{key} must be a list")
    return value


_APP_OPTIONAL = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "revision",
        "tags",
        "revisions",
        "revisionReady",
        "trafficToLatest",
        "subscription",
        "createdAt",
        "deletedAt",
    }
)
_FLEET_VARIES = frozenset(
    {"tags", "workload", "resourceGroup", "location", "subscription", "createdAt", "deletedAt"}
    | {"minReplicas", "maxReplicas"}
)


def _fleet(check: _Checker, node: _Map, subscription: str) -> list[ResourceSpec]:
    """``count: N`` declares N Container Apps from one entry: ``{i}`` (1..N, with an
    optional format spec such as ``{i:03d}``) in the name, resource group and tag values;
    ``vary:`` entries override fields for every ``every``-th app (``i % every == offset``)
    or for the ``indices`` listed (``tags`` and ``workload`` merge, the rest replace)."""
    what = f"resource {node.get('name', '?')}"
    count = check.integer(node, "count", what, 1, 100_000)
    name = node.get("name")
    if isinstance(name, str):
        _template(check, node, "name", name, 1)  # a bad template is named before anything
    if count > 1 and (not isinstance(name, str) or "{i" not in name):
        raise check.fail(node, f"{what}: name must contain {{i}} when count > 1", "name")
    if "vary" in node and not isinstance(node["vary"], list):
        raise check.fail(node, f"{what}: vary must be a list", "vary")
    rules = []
    for raw in node.get("vary") or []:
        rule = check.mapping(raw, f"{what}: vary entry", node)
        check.keys(
            rule, f"{what}: vary entry", set(), {"every", "offset", "indices"} | _FLEET_VARIES
        )
        if ("every" in rule) == ("indices" in rule):
            raise check.fail(rule, f"{what}: a vary entry needs either every or indices")
        if "every" in rule:
            every = check.integer(rule, "every", "vary", 1, 100_000)
            offset = check.integer(rule, "offset", "vary", 0, every - 1) if "offset" in rule else 0
            chosen: AbstractSet[int] | None = None
        else:
            every, offset = 0, 0
            listed = rule["indices"]
            if not isinstance(listed, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= count for n in listed
            ):
                raise check.fail(rule, f"vary.indices must list integers in 1..{count}", "indices")
            chosen = frozenset(listed)
        if not set(rule) & _FLEET_VARIES:
            raise check.fail(rule, f"{what}: a vary entry changes nothing")
        rules.append((rule, every, offset, chosen))
    base = {k: v for k, v in node.items() if k not in ("count", "vary")}
    specs = []
    for i in range(1, count + 1):
        member = _Map(base)
        member.line, member.key_lines = node.line, dict(node.key_lines)
        for rule, every, offset, chosen in rules:
            if (chosen is not None and i in chosen) or (every and i % every == offset):
                _override(check, member, rule, what)
        for key in ("name", "resourceGroup"):
            if isinstance(member.get(key), str):
                member[key] = _template(check, member, key, member[key], i)
        if isinstance(member.get("tags"), dict):
            tags = _Map(
                {
                    k: _template(check, member, "tags", v, i) if isinstance(v, str) else v
                    for k, v in member["tags"].items()
                    if v is not None  # a vary entry's "key: null" removes the tag
                }
            )
            tags.line = getattr(member["tags"], "line", member.line)
            member["tags"] = tags
        specs.append(_resource(check, member, subscription))
    return specs


def _override(check: _Checker, member: _Map, rule: _Map, what: str) -> None:
    """Apply one ``vary`` entry to a fleet member: ``tags`` and ``workload`` merge, the
    other fields replace; errors in them are reported at the entry's line."""
    for key in sorted(set(rule) & _FLEET_VARIES):
        value = rule[key]
        if key in ("tags", "workload"):
            change = check.mapping(value, f"{what}: vary.{key}", rule)
            before = member.get(key)
            value = _Map({**before, **change}) if isinstance(before, dict) else change
            value.line = change.line
            value.key_lines = {**getattr(before, "key_lines", {}), **change.key_lines}
        member[key] = value
        member.key_lines[key] = rule.key_lines.get(key, rule.line)


def _template(check: _Checker, node: _Map, key: str, text: str, i: int) -> str:
    """``text`` with each ``{i}`` / ``{i:SPEC}`` filled in (nothing else is evaluated)."""
    out = []
    try:
        for literal, field_name, spec, conversion in string.Formatter().parse(text):
            out.append(literal)
            if field_name is None:
                continue
            if field_name != "i" or conversion:
                raise ValueError(f"only {{i}} or {{i:SPEC}} may be used, not {{{field_name}}}")
            out.append(format(i, spec or ""))
    except ValueError as exc:
        raise check.fail(node, f"{key}: bad template {text!r}: {exc}", key) from None
    return "".join(out)


def resource_from_json(body: Any, subscription: str) -> ResourceSpec:
    """A Container App declared at runtime (the control API), validated like a scenario's;
    containers and workload default to a small, idle app."""
    if not isinstance(body, dict):
        raise ScenarioError("<request>: the body must be a JSON object")
    data = {
        "type": "containerApp",
        "location": "eastus",
        "containers": [
            {
                "name": "app",
                "image": "mcr.microsoft.com/k8se/quickstart:latest",
                "cpu": 0.5,
                "memory": "1Gi",
            }
        ],
        "workload": {"cpuDemandCores": 0.1, "baseMemoryMiB": 256},
        **body,
    }
    return _resource(_Checker("<request>"), _mapped(data), subscription)


def _mapped(value: Any) -> Any:
    """JSON values as the line-tracking types the checker expects (line 0: none)."""
    if isinstance(value, dict):
        node = _Map({str(k): _mapped(v) for k, v in value.items()})
        node.key_lines = {}
        return node
    if isinstance(value, list):
        return [_mapped(v) for v in value]
    return value


def _resource(check: _Checker, raw: Any, subscription: str) -> ResourceSpec:
    node = check.mapping(raw, "resource", None)
    what = f"resource {node.get('name', '?')}"
    check.keys(
        node,
        what,
        {"type", "resourceGroup", "name", "location", "containers", "workload"},
        _APP_OPTIONAL,
    )
    if node["type"] != "containerApp":
        raise check.fail(
            node,
            f"{what}: type must be containerApp, cosmosThroughput or redisCache, "
            f"not {node['type']!r}",
        )
    name = check.string(node, "name", what)
    min_replicas = check.integer(node, "minReplicas", what, 0, 1000) if "minReplicas" in node else 1
    max_replicas = (
        check.integer(node, "maxReplicas", what, 1, 1000) if "maxReplicas" in node else 10
    )
    if min_replicas > max_replicas:
        raise check.fail(node, f"{what}: minReplicas > maxReplicas")
    containers_raw = node["containers"]
    if not isinstance(containers_raw, list) or not containers_raw:
        raise check.fail(node, f"{what}: containers must be a non-empty list")
    containers = []
    for item in containers_raw:
        c = check.mapping(item, f"{what}: container", node)
        check.keys(c, f"{what}: container", {"name", "image", "cpu", "memory"})
        cpu = check.number(c, "cpu", "container", 0.0)
        memory = check.string(c, "memory", "container")
        problem = consumption_pair_error(cpu, memory)
        if problem:
            raise check.fail(c, f"{what}: container {c.get('name')}: {problem}")
        containers.append(
            ContainerSpec(
                check.string(c, "name", "container"),
                check.string(c, "image", "container"),
                cpu,
                memory,
            )
        )
    wl = check.mapping(node["workload"], f"{what}: workload", node)
    check.keys(
        wl,
        f"{what}: workload",
        {"cpuDemandCores", "baseMemoryMiB"},
        {"leakMiBPerMinute", "cpuDemandPerReplicaCores", "requestsPerMinute"},
    )
    workload = WorkloadSpec(
        cpu_demand_cores=check.number(wl, "cpuDemandCores", "workload"),
        base_memory_mib=check.number(wl, "baseMemoryMiB", "workload"),
        leak_mib_per_minute=(
            check.number(wl, "leakMiBPerMinute", "workload") if "leakMiBPerMinute" in wl else 0.0
        ),
        cpu_demand_per_replica=(
            check.number(wl, "cpuDemandPerReplicaCores", "workload")
            if "cpuDemandPerReplicaCores" in wl
            else 0.0
        ),
        requests_per_minute=(
            check.number(wl, "requestsPerMinute", "workload")
            if "requestsPerMinute" in wl
            else 600.0
        ),
    )
    tags = node.get("tags") or {}
    if not isinstance(tags, dict):
        raise check.fail(node, f"{what}: tags must be a mapping")
    created = check.duration(node, "createdAt", what) if "createdAt" in node else None
    deleted = check.duration(node, "deletedAt", what) if "deletedAt" in node else None
    if created is not None and deleted is not None and deleted <= created:
        raise check.fail(node, f"{what}: deletedAt must come after createdAt", "deletedAt")
    return ResourceSpec(
        type="containerApp",
        subscription=check.string(node, "subscription", what)
        if "subscription" in node
        else subscription,
        created_at=created,
        deleted_at=deleted,
        resource_group=check.string(node, "resourceGroup", what),
        name=name,
        location=check.string(node, "location", what),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        revision=check.string(node, "revision", what) if "revision" in node else f"{name}--r1",
        containers=tuple(containers),
        workload=workload,
        tags={str(k): str(v) for k, v in tags.items()},
        revisions=_revisions(check, node, what),
        revision_ready=(
            check.duration(node, "revisionReady", what) if "revisionReady" in node else READY_AFTER
        ),
        latest_traffic=_flag(check, node, "trafficToLatest", what),
    )


def _flag(check: _Checker, node: _Map, key: str, what: str) -> bool:
    value = node.get(key, False)
    if not isinstance(value, bool):
        raise check.fail(node, f"{what}.{key} must be true or false", key)
    return value


def _revisions(check: _Checker, node: _Map, what: str) -> tuple[RevisionSpec, ...]:
    """``revisions:`` — declaring them puts the app in multiple-revision mode."""
    raw = node.get("revisions")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) < 2:
        raise check.fail(node, f"{what}: revisions must list at least two", "revisions")
    found = []
    for item in raw:
        r = check.mapping(item, f"{what}: revision", node)
        check.keys(
            r,
            f"{what}: revision",
            {"name"},
            {"errorRatePercent", "p95Ms", "traffic", "age", "image"},
        )
        found.append(
            RevisionSpec(
                name=check.string(r, "name", "revision"),
                error_rate_percent=(
                    check.number(r, "errorRatePercent", "revision")
                    if "errorRatePercent" in r
                    else 0.1
                ),
                p95_ms=check.number(r, "p95Ms", "revision") if "p95Ms" in r else 250.0,
                traffic_percent=check.integer(r, "traffic", "revision", 0, 100)
                if "traffic" in r
                else 0,
                age=check.duration(r, "age", "revision") if "age" in r else dt.timedelta(days=1),
                image=check.string(r, "image", "revision") if "image" in r else None,
            )
        )
    if sum(r.traffic_percent for r in found) != 100:
        raise check.fail(node, f"{what}: revision traffic must add up to 100", "revisions")
    return tuple(found)


def _timeline(check: _Checker, raw: Any, kinds: dict[str, str]) -> TimelineEvent:
    node = check.mapping(raw, "timeline entry", None)
    fields = {
        "containerApp": WORKLOAD_FIELDS,
        "cosmosThroughput": COSMOS_DEMAND_FIELDS,
        "redisCache": REDIS_FIELDS,
    }
    check.keys(node, "timeline entry", {"at", "resource"}, {k for f in fields.values() for k in f})
    resource = check.string(node, "resource", "timeline entry")
    if resource not in kinds:
        raise check.fail(node, f"timeline entry: unknown resource {resource!r}")
    allowed = fields[kinds[resource]]
    wrong = sorted(k for k in node if k not in allowed and k not in ("at", "resource"))
    if wrong:
        raise check.fail(
            node,
            f"timeline entry: {', '.join(wrong)} does not apply to a {kinds[resource]}",
            wrong[0],
        )
    changes = {allowed[k]: check.number(node, k, "timeline entry") for k in allowed if k in node}
    if not changes:
        raise check.fail(node, "timeline entry: changes no workload field")
    return TimelineEvent(check.duration(node, "at", "timeline entry"), resource, changes)


def _fault(check: _Checker, raw: Any) -> FaultSpec:
    node = check.mapping(raw, "fault", None)
    check.keys(node, "fault", {"at", "kind"}, {"for", "hang_seconds", "delay_seconds"})
    kind = check.string(node, "kind", "fault")
    if kind not in FAULT_KINDS:
        raise check.fail(
            node, f"fault: unknown kind {kind!r} (known: {', '.join(sorted(FAULT_KINDS))})"
        )
    duration = check.duration(node, "for", "fault") if node.get("for") is not None else None
    params: dict[str, Any] = {}
    for key in ("hang_seconds", "delay_seconds"):
        if key in node:
            params[key] = check.number(node, key, "fault")
    return FaultSpec(check.duration(node, "at", "fault"), duration, kind, params)


def _policies(check: _Checker, root: _Map, resource_ids: set[str]) -> list[dict[str, Any]]:
    out = []
    for raw in _list(check, root, "policies"):
        node = check.mapping(raw, "policy", root)
        target = node.get("target")
        rid = target.get("resourceId") if isinstance(target, dict) else None
        if isinstance(rid, str) and rid.lower() not in resource_ids:
            raise check.fail(node, f"policy targets {rid}, which is not a scenario resource")
        out.append(_plain(node))
    return out
