"""Azure Cache for Redis: the scenario spec, the workload model and its ARM JSON.

Sizes. Each SKU has *units* of server capacity, relative to a C1 (= 1), and memory:

====  =====  ==========  ==========  ====  =====  ==========  ==========
SKU   units  memory      maxclients  SKU   units  memory      maxclients
====  =====  ==========  ==========  ====  =====  ==========  ==========
C0    0.25   250 MB         256      P1     4     6 GB          7,500
C1    1      1 GB         1,000      P2     8     13 GB        15,000
C2    2      2.5 GB       2,000      P3    16     26 GB        30,000
C3    4      6 GB         5,000      P4    24     53 GB        40,000
C4    8      13 GB       10,000      P5    32     120 GB       40,000
C5    16     26 GB       15,000
C6    32     53 GB       20,000
====  =====  ==========  ==========  ====  =====  ==========  ==========

C0 shares its host (a quarter of a C1); each C size doubles the one before; a P1 is
about four C1s and P2…P5 are 2×, 4×, 6× and 8× a P1 (Redis is mostly single-threaded,
so the largest sizes gain less than their memory suggests). Memory (1 GB = 1,024 MiB)
and ``maxclients`` are the service's published figures.

Workload, per minute:

* ``connectedclients`` = the workload's clients (at most ``maxclients``);
* ``serverLoad`` = ``percentProcessorTime`` = connected × ``loadPerClient`` / units,
  capped at 100 (``loadPerClient`` is the load one client puts on a C1, in percent);
* ``usedmemorypercentage`` = dataset / SKU memory, capped at 100;
* ``errors`` (type ``UnresponsiveClients``): none below 90 % load; from 90 % on,
  connected × (load − 85) / 50 a minute, the load uncapped (95 clients at 95 % give 19).

A scale is accepted as ``Scaling``; as in Azure it proceeds whether or not anyone
watches: it lands when its time has come (the emulator's operation time), or sooner once
the cache has been read ``lro_polls`` more times (the SDK polls the cache itself), and
the new SKU serves from that moment on. An ``AllNodes`` or ``PrimaryNode`` reboot drops
every client: none in the minute of the reboot, then a third more each minute until all
are back after three minutes; the error count starts again from 0 for the five minutes
after it. A ``SecondaryNode`` reboot is recorded but clients never notice it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .history import History
from .metered import Aggregates, MetricDef, constant
from .timeutil import MINUTE, floor_minute, format_datetime

if TYPE_CHECKING:
    from .scenario import _Checker, _Map

NAMESPACE = "Microsoft.Cache/redis"
CATALOG: dict[str, MetricDef] = {
    m.name.lower(): m
    for m in (
        MetricDef("serverLoad", "Percent", ("ShardId",)),
        MetricDef("percentProcessorTime", "Percent", ("ShardId",)),
        MetricDef("usedmemorypercentage", "Percent", ("ShardId",)),
        MetricDef("connectedclients", "Count", ("ShardId",)),
        MetricDef("errors", "Count", ("ShardId", "ErrorType")),
    )
}
# scenario timeline keys → RedisSpec/workload fields
WORKLOAD_FIELDS = {
    "clients": "clients",
    "loadPerClient": "load_per_client",
    "datasetMiB": "dataset_mib",
}

TIERS = {"Basic": "C", "Standard": "C", "Premium": "P"}
_RANK = {"Basic": 0, "Standard": 1, "Premium": 2}
# capacity → (units of a C1, memory MiB, maxclients)
SIZES: dict[str, dict[int, tuple[float, int, int]]] = {
    "C": {
        0: (0.25, 250, 256),
        1: (1.0, 1024, 1000),
        2: (2.0, 2560, 2000),
        3: (4.0, 6144, 5000),
        4: (8.0, 13312, 10000),
        5: (16.0, 26624, 15000),
        6: (32.0, 54272, 20000),
    },
    "P": {
        1: (4.0, 6144, 7500),
        2: (8.0, 13312, 15000),
        3: (16.0, 26624, 30000),
        4: (24.0, 54272, 40000),
        5: (32.0, 122880, 40000),
    },
}
REBOOT_TYPES = ("AllNodes", "PrimaryNode", "SecondaryNode")
RECONNECT_MINUTES = 3  # clients are all back this long after a disruptive reboot
QUIET_MINUTES = 5  # the error count restarts from 0 for this long after one
ERROR_LOAD = 90.0  # errors appear from this server load on
ERROR_TYPE = "UnresponsiveClients"
BUSY_MESSAGE = (
    "The resource '{id}' is busy processing a previous update request or is undergoing "
    "system maintenance. As such, it is currently unable to accept the update request. "
    "Please try again later."
)
# Update properties the emulator applies (flags, and settings with their values); other
# RedisUpdateProperties are refused as not emulated, names outside the schema as unknown.
_FLAGS = ("enableNonSslPort", "disableAccessKeyAuthentication")
_CHOICES = {
    "publicNetworkAccess": ("Enabled", "Disabled"),
    "minimumTlsVersion": ("1.0", "1.1", "1.2"),
    "updateChannel": ("Stable", "Preview"),
}
_SETTINGS = (*_FLAGS, *_CHOICES)
_NOT_EMULATED = {
    "redisVersion",
    "replicasPerMaster",
    "replicasPerPrimary",
    "tenantSettings",
    "shardCount",
    "zonalAllocationPolicy",
}


@dataclass(frozen=True)
class Sku:
    name: str  # Basic | Standard | Premium
    family: str  # C | P
    capacity: int

    @property
    def code(self) -> str:
        return f"{self.family}{self.capacity}"

    @property
    def units(self) -> float:
        return SIZES[self.family][self.capacity][0]

    @property
    def memory_mib(self) -> int:
        return SIZES[self.family][self.capacity][1]

    @property
    def max_clients(self) -> int:
        return SIZES[self.family][self.capacity][2]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "capacity": self.capacity}


def sku_problem(name: Any, family: Any, capacity: Any) -> str | None:
    """Why ``name``/``family``/``capacity`` is not a SKU the service offers (None: it is)."""
    if name not in TIERS:
        return f"sku.name must be Basic, Standard or Premium, not {name!r}."
    if family != TIERS[name]:
        return f"The {name} tier is family {TIERS[name]}; sku.family {family!r} does not fit."
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity not in SIZES[family]:
        low, high = min(SIZES[family]), max(SIZES[family])
        return f"sku.capacity for family {family} must be {low} to {high}, not {capacity!r}."
    return None


@dataclass(frozen=True)
class RedisSpec:
    """A cache as at scenario start."""

    name: str  # the cache's name (timeline entries name it too)
    subscription: str
    resource_group: str
    location: str
    sku: Sku
    clients: float
    load_per_client: float = 1.0  # server-load percent one client causes on a C1
    dataset_mib: float = 100.0
    tags: tuple[tuple[str, str], ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()  # enableNonSslPort … as the scenario sets them

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Cache/Redis/{self.name}"
        )


@dataclass(frozen=True)
class Reboot:
    at: datetime
    reboot_type: str
    shard_id: int | None


@dataclass(frozen=True)
class RedisSample:
    server_load: float  # percent, capped at 100
    used_memory: float  # percent
    connected: float
    errors: float  # in the minute


class PatchRefused(Exception):
    """A PATCH or reboot the resource provider refuses, answered with ``status`` and ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Update:
    """What a validated PATCH changes: a SKU to scale to, settings, configuration, tags."""

    sku: Sku | None
    settings: dict[str, Any]
    configuration: dict[str, str]
    tags: dict[str, str] | None


class RedisCache:
    """One cache: its SKU over time, its workload over time, reboots, and ARM-only fields."""

    def __init__(
        self, spec: RedisSpec, start: datetime, changes: list[tuple[datetime, dict[str, float]]]
    ) -> None:
        self.spec = spec
        self.start = start
        self.skus: History[Sku] = History(start, spec.sku)
        self.workload: dict[str, History[float]] = {
            "clients": History(start, spec.clients),
            "load_per_client": History(start, spec.load_per_client),
            "dataset_mib": History(start, spec.dataset_mib),
        }
        for at, fields in changes:
            for key, value in fields.items():
                self.workload[key].set(at, value)
        self.reboots: list[Reboot] = []
        self.tags: dict[str, str] = dict(spec.tags)
        self.settings: dict[str, Any] = {
            "enableNonSslPort": False,
            "publicNetworkAccess": "Enabled",
            "minimumTlsVersion": "1.2",
            "disableAccessKeyAuthentication": False,
            "updateChannel": "Stable",
            **dict(spec.settings),
        }
        self.configuration: dict[str, str] = {
            "maxmemory-policy": "volatile-lru",
            "maxmemory-reserved": "30",
            "maxfragmentationmemory-reserved": "30",
            "maxmemory-delta": "30",
        }
        self.pending: Sku | None = None  # the SKU a scale in progress goes to
        self.pending_fail = False  # the scale ends Failed (the ``lro-fail`` fault)
        self.polls = 0  # reads of the cache since the scale was accepted
        self.due: datetime | None = None  # when a scale in progress ends, read or not
        self.modified_at: datetime | None = None

    # -- ARM -------------------------------------------------------------------------------

    @property
    def resource_id(self) -> str:
        return self.spec.resource_id

    @property
    def sku(self) -> Sku:
        return self.skus.current

    @property
    def provisioning_state(self) -> str:
        return "Scaling" if self.pending is not None else "Succeeded"

    def read(self, now: datetime, lro_polls: int) -> str:
        """A GET of the cache: a scale in progress lands once read ``lro_polls`` times
        (the SDK polls the cache itself). Returns the state this read reports."""
        if self.pending is None:
            return "Succeeded"
        self.polls += 1
        if self.polls <= lro_polls:
            return "Scaling"
        return self.land(now)

    def land(self, now: datetime) -> str:
        """End the scale in progress as of ``now``: the new SKU serves from then (or, with
        the ``lro-fail`` fault, it is rolled back). Returns the state a read reports."""
        assert self.pending is not None
        failed = self.pending_fail
        if not failed:
            self.skus.set(now, self.pending)
        self.pending, self.due = None, None
        return "Failed" if failed else "Succeeded"  # after a failure, later reads: Succeeded

    def validate(self, body: Any) -> Update:
        """The change a PATCH asks for, or PatchRefused with the service's answer."""
        if self.pending is not None:
            raise PatchRefused(409, "Conflict", BUSY_MESSAGE.format(id=self.resource_id))
        if not isinstance(body, dict):
            raise PatchRefused(
                400, "InvalidRequestContent", "The request body must be a JSON object."
            )
        _no_unknown(body, {"properties", "tags", "identity"}, "RedisUpdateParameters")
        if "identity" in body:
            raise PatchRefused(400, "BadRequest", "identity: not emulated.")
        props = body.get("properties") or {}
        if not isinstance(props, dict):
            raise PatchRefused(400, "InvalidRequestContent", "properties must be an object.")
        _no_unknown(
            props,
            {"sku", "redisConfiguration", *_SETTINGS, *_NOT_EMULATED},
            "RedisUpdateProperties",
        )
        not_emulated = sorted(_NOT_EMULATED & set(props))
        if not_emulated:
            raise PatchRefused(400, "BadRequest", f"properties.{not_emulated[0]}: not emulated.")
        settings = {key: props[key] for key in _SETTINGS if key in props}
        for key, value in settings.items():
            if not _setting_ok(key, value):
                raise PatchRefused(400, "BadRequest", f"properties.{key}: invalid value {value!r}.")
        configuration = _configuration(props.get("redisConfiguration"))
        tags = body.get("tags")
        if tags is not None and (
            not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
        ):
            raise PatchRefused(400, "InvalidRequestContent", "tags must map names to strings.")
        sku = self._scale(props["sku"]) if "sku" in props else None
        return Update(sku, settings, configuration, tags)

    def _scale(self, raw: Any) -> Sku | None:
        """The SKU a scale goes to (None: the current one), or the service's refusal."""
        if not isinstance(raw, dict):
            raise PatchRefused(400, "InvalidRequestContent", "properties.sku must be an object.")
        _no_unknown(raw, {"name", "family", "capacity"}, "Sku")
        problem = sku_problem(raw.get("name"), raw.get("family"), raw.get("capacity"))
        if problem:
            raise PatchRefused(400, "BadRequest", problem)
        wanted = Sku(raw["name"], raw["family"], raw["capacity"])
        now = self.sku
        if wanted == now:
            return None
        if _RANK[wanted.name] < _RANK[now.name]:
            raise PatchRefused(
                400,
                "BadRequest",
                f"Scaling from {now.name} down to {wanted.name} is not supported.",
            )
        if now.name == "Basic" and wanted.name == "Premium":
            raise PatchRefused(
                400,
                "BadRequest",
                "A Basic cache cannot scale directly to Premium: scale to Standard first.",
            )
        if now.name == "Basic" and wanted.name == "Standard" and wanted.capacity != now.capacity:
            raise PatchRefused(
                400,
                "BadRequest",
                "A Basic cache can move to Standard or change size, not both at once.",
            )
        if wanted.code == "C0" and now.code != "C0":
            raise PatchRefused(400, "BadRequest", "A cache cannot scale down to C0 (250 MB).")
        return wanted

    def apply(
        self, now: datetime, update: Update, fail: bool = False, due: datetime | None = None
    ) -> None:
        """Apply a validated PATCH: settings at once; a new SKU starts ``Scaling`` and
        ends at ``due`` whether or not anyone reads the cache (sooner once read enough)."""
        self.settings.update(update.settings)
        self.configuration.update(update.configuration)
        if update.tags is not None:
            self.tags = dict(update.tags)
        if update.sku is not None:
            self.pending = update.sku
            self.pending_fail = fail
            self.polls = 0
            self.due = due
        self.modified_at = now

    def reboot(self, now: datetime, body: Any) -> Reboot:
        """Record a ``forceReboot`` (validated as the service does)."""
        if self.pending is not None:
            raise PatchRefused(409, "Conflict", BUSY_MESSAGE.format(id=self.resource_id))
        if not isinstance(body, dict):
            raise PatchRefused(
                400, "InvalidRequestContent", "The request body must be a JSON object."
            )
        _no_unknown(body, {"rebootType", "shardId", "ports"}, "RedisRebootParameters")
        kind = body.get("rebootType")
        if kind not in REBOOT_TYPES:
            raise PatchRefused(
                400,
                "BadRequest",
                f"rebootType must be one of {', '.join(REBOOT_TYPES)}; got {kind!r}.",
            )
        shard = body.get("shardId")
        if shard is not None and (
            isinstance(shard, bool) or not isinstance(shard, int) or shard < 0
        ):
            raise PatchRefused(
                400, "BadRequest", f"shardId must be an integer >= 0; got {shard!r}."
            )
        ports = body.get("ports", [])
        if not isinstance(ports, list) or not all(isinstance(p, int) for p in ports):
            raise PatchRefused(400, "BadRequest", "ports must be a list of port numbers.")
        done = Reboot(now, kind, shard)
        self.reboots.append(done)
        return done

    def to_json(self, state: str) -> dict[str, Any]:
        """The cache (RedisCacheGet.json's shape). Access keys are never served."""
        sku = self.sku
        host = f"{self.spec.name}.redis.cache.windows.net"
        replicas = 0 if sku.name == "Basic" else 1
        instances = [
            {"sslPort": 15000 + i, "nonSslPort": 13000 + i, "isMaster": i == 0, "isPrimary": i == 0}
            for i in range(1 + replicas)
        ]
        created = format_datetime(self.start)
        return {
            "id": self.resource_id,
            "location": self.spec.location,
            "name": self.spec.name,
            "type": "Microsoft.Cache/Redis",
            "tags": dict(self.tags),
            "systemData": {
                "createdBy": "operator@example.com",
                "createdByType": "User",
                "createdAt": created,
                "lastModifiedBy": "operator@example.com",
                "lastModifiedByType": "Application" if self.modified_at else "User",
                "lastModifiedAt": format_datetime(self.modified_at)
                if self.modified_at
                else created,
            },
            "properties": {
                "provisioningState": state,
                "redisVersion": "6.0",
                "sku": sku.to_json(),
                **self.settings,
                "replicasPerMaster": replicas,
                "replicasPerPrimary": replicas,
                "zonalAllocationPolicy": "Automatic",
                "redisConfiguration": {"maxclients": str(sku.max_clients), **self.configuration},
                "hostName": host,
                "port": 6379,
                "sslPort": 6380,
                "linkedServers": [],
                "instances": instances,
                "privateEndpointConnections": [],
            },
        }

    # -- workload --------------------------------------------------------------------------

    def _since_reboot(self, minute: datetime) -> int | None:
        """Whole minutes from the last client-visible reboot to ``minute`` (None: none)."""
        seen = [
            r.at
            for r in self.reboots
            if r.reboot_type != "SecondaryNode" and floor_minute(r.at) <= minute
        ]
        if not seen:
            return None
        return int((minute - floor_minute(max(seen))) / MINUTE)

    def sample(self, minute: datetime) -> RedisSample:
        sku = self.skus.at(minute)
        since = self._since_reboot(minute)
        back = 1.0 if since is None else min(1.0, since / RECONNECT_MINUTES)
        connected = min(self.workload["clients"].at(minute) * back, float(sku.max_clients))
        raw = connected * self.workload["load_per_client"].at(minute) / sku.units
        quiet = since is not None and since < QUIET_MINUTES
        errors = round(connected * (raw - 85) / 50) if raw >= ERROR_LOAD and not quiet else 0
        memory = min(100.0, self.workload["dataset_mib"].at(minute) / sku.memory_mib * 100)
        return RedisSample(min(100.0, raw), memory, connected, float(errors))

    # -- Metered ---------------------------------------------------------------------------

    @property
    def metrics_id(self) -> str:
        return self.resource_id

    @property
    def namespace(self) -> str:
        return NAMESPACE

    @property
    def location(self) -> str:
        return self.spec.location

    @property
    def catalog(self) -> Mapping[str, MetricDef]:
        return CATALOG

    def minute(self, metric: MetricDef, at: datetime, dimensions: Mapping[str, str]) -> Aggregates:
        if dimensions.get("shardid", "0") != "0":
            return constant(0.0)  # one shard: no clustering
        s = self.sample(at)
        name = metric.name.lower()
        if name in ("serverload", "percentprocessortime"):
            return constant(s.server_load)
        if name == "usedmemorypercentage":
            return constant(s.used_memory)
        if name == "connectedclients":
            return constant(s.connected)
        errors = s.errors if dimensions.get("errortype", ERROR_TYPE) == ERROR_TYPE else 0.0
        return constant(errors, per_item=False)

    def dimension_value(self, dimension: str) -> str:
        return {"shardid": "0", "errortype": ERROR_TYPE}.get(dimension, "unknown")


def _setting_ok(key: str, value: Any) -> bool:
    return isinstance(value, bool) if key in _FLAGS else value in _CHOICES[key]


def _no_unknown(node: dict[str, Any], known: set[str], kind: str) -> None:
    unknown = sorted(set(node) - known)
    if unknown:
        raise PatchRefused(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: "
            f"'Could not find member '{unknown[0]}' on object of type '{kind}'.'",
        )


def _configuration(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise PatchRefused(400, "BadRequest", "redisConfiguration must map names to strings.")
    if "maxclients" in raw:
        raise PatchRefused(400, "BadRequest", "redisConfiguration.maxclients is read-only.")
    return {str(k): v for k, v in raw.items()}


def parse_spec(check: _Checker, node: _Map, subscription: str) -> RedisSpec:
    """A ``type: redisCache`` scenario resource."""
    what = f"resource {node.get('name', '?')}"
    check.keys(
        node,
        what,
        {"type", "name", "resourceGroup", "location", "sku", "workload"},
        {"tags", *_SETTINGS},
    )
    raw_sku = check.mapping(node["sku"], f"{what}: sku", node)
    check.keys(raw_sku, f"{what}: sku", {"name", "family", "capacity"})
    problem = sku_problem(raw_sku["name"], raw_sku["family"], raw_sku["capacity"])
    if problem:
        raise check.fail(raw_sku, f"{what}: {problem}")
    wl = check.mapping(node["workload"], f"{what}: workload", node)
    check.keys(wl, f"{what}: workload", {"clients"}, {"loadPerClient", "datasetMiB"})
    settings = [(key, node[key]) for key in _SETTINGS if key in node]
    for key, value in settings:
        if not _setting_ok(key, value):
            raise check.fail(node, f"{what}.{key}: invalid value {value!r}", key)
    tags = node.get("tags") or {}
    if not isinstance(tags, dict):
        raise check.fail(node, f"{what}: tags must be a mapping", "tags")
    return RedisSpec(
        name=check.string(node, "name", what),
        subscription=subscription,
        resource_group=check.string(node, "resourceGroup", what),
        location=check.string(node, "location", what),
        sku=Sku(raw_sku["name"], raw_sku["family"], raw_sku["capacity"]),
        clients=check.number(wl, "clients", "workload"),
        load_per_client=(
            check.number(wl, "loadPerClient", "workload") if "loadPerClient" in wl else 1.0
        ),
        dataset_mib=check.number(wl, "datasetMiB", "workload") if "datasetMiB" in wl else 100.0,
        tags=tuple((str(k), str(v)) for k, v in tags.items()),
        settings=tuple(settings),
    )
