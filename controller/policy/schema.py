"""Policy language v1: what a YAML policy may say, as pydantic models.

A policy names one target, the objectives it must meet, an ordered remediation
ladder, and the guards that limit it::

    apiVersion: remediator/v1
    kind: Policy
    metadata: {name: api-high-cpu}
    target: {type: containerApp, resourceId: /subscriptions/…/containerApps/api, region: eastus}
    objectives:
      - name: cpu
        signal: {metric: CpuPercentage, aggregation: Average, grain: 1m}
        comparison: "<"        # the objective holds while value < threshold
        threshold: 70
        clear: 60              # after a breach, healthy again only below this line
        for: 5m                # a breach must be sustained this long
    remediation:
      - scaleOut: {step: 1, maxReplicas: 6}
      - scaleUp: {maxCpu: 2.0}
      - restartRevision: {}
    guards: {cooldown: 5m, maxActionsPerHour: 4, bounds: {maxReplicas: 10, maxCpu: 2.0}}

YAML keys are camelCase; Python attributes are snake_case.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controller.durations import format_duration
from controller.policy.base import Duration, Interval, PositiveDuration, Strict
from controller.policy.probe_signals import HttpProbeSignal, PrometheusSignal
from controller.policy.selector import GRAPH_TYPES, Selector
from controller.sizes import CONTAINER_APP_CPU_STEPS

AZURE_GRAINS = tuple(
    timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 360, 720, 1440)
)  # PT1M … P1D: what the metrics APIs accept

_GROUP = r"^/subscriptions/[0-9A-Za-z-]+/resourceGroups/[-\w.()]+/providers/"
_NAME = r"[A-Za-z0-9][-\w.]{0,62}"
TARGET_IDS: dict[str, tuple[re.Pattern[str], str]] = {
    kind: (re.compile(_GROUP + pattern + "$", re.IGNORECASE), shape)
    for kind, pattern, shape in (
        (
            "containerApp",
            r"Microsoft\.App/containerApps/[a-z0-9][a-z0-9-]{0,30}[a-z0-9]?",
            "Microsoft.App/containerApps/{name}",
        ),
        (
            "cosmosSqlDatabase",
            rf"Microsoft\.DocumentDB/databaseAccounts/{_NAME}/sqlDatabases/{_NAME}",
            "Microsoft.DocumentDB/databaseAccounts/{account}/sqlDatabases/{database}",
        ),
        (
            "cosmosSqlContainer",
            rf"Microsoft\.DocumentDB/databaseAccounts/{_NAME}/sqlDatabases/{_NAME}"
            rf"/containers/{_NAME}",
            "Microsoft.DocumentDB/databaseAccounts/{account}/sqlDatabases/{database}"
            "/containers/{container}",
        ),
        ("redisCache", rf"Microsoft\.Cache/redis/{_NAME}", "Microsoft.Cache/redis/{name}"),
        (  # anything else Azure Monitor has metrics for: watched, never acted on
            "azureResource",
            rf"[A-Za-z]+\.[A-Za-z.]+/[A-Za-z]+/{_NAME}",
            "{provider}/{type}/{name}",
        ),
    )
}
_COSMOS_PATH = re.compile(
    r"/providers/Microsoft\.DocumentDB/databaseAccounts/(?P<account>[^/]+)"
    r"/(?P<db_segment>sqlDatabases)/(?P<database>[^/]+)(?:/containers/(?P<container>[^/]+))?$",
    re.IGNORECASE,
)
TargetType = Literal[
    "containerApp", "cosmosSqlDatabase", "cosmosSqlContainer", "redisCache", "azureResource"
]
METRIC_NAMESPACES: dict[str, str] = {
    "containerApp": "Microsoft.App/containerApps",
    "cosmosSqlDatabase": "Microsoft.DocumentDB/databaseAccounts",
    "cosmosSqlContainer": "Microsoft.DocumentDB/databaseAccounts",
    "redisCache": "Microsoft.Cache/redis",
}
# What each kind of target can be asked to do (the ladder), and how it steps back.
LADDER_ACTIONS: dict[str, frozenset[str]] = {
    "containerApp": frozenset({"scaleOut", "scaleUp", "restartRevision", "rollbackRevision"}),
    "cosmosSqlDatabase": frozenset({"raiseThroughput"}),
    "cosmosSqlContainer": frozenset({"raiseThroughput"}),
    "redisCache": frozenset({"scaleCache", "rebootCache"}),
    "azureResource": frozenset(),
}
STEP_BACK_ACTIONS: dict[str, tuple[str, ...]] = {
    "containerApp": ("scaleIn", "scaleDown"),
    "cosmosSqlDatabase": ("lowerThroughput",),
    "cosmosSqlContainer": ("lowerThroughput",),
    "redisCache": (),
    "azureResource": (),
}
ActionName = Literal[
    "scaleOut",
    "scaleUp",
    "restartRevision",
    "rollbackRevision",
    "scaleIn",
    "scaleDown",
    "raiseThroughput",
    "lowerThroughput",
    "scaleCache",
    "rebootCache",
]


class Metadata(Strict):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
    labels: dict[str, str] = Field(default_factory=dict)


class Target(Strict):
    """One named resource (``resourceId``), or every resource a ``selector`` finds in Azure
    Resource Graph — each of which becomes a target of its own, with its own memory."""

    type: TargetType
    resource_id: str = ""  # empty only in a selector policy, which never runs as it is
    selector: Selector | None = None
    # Azure's region name (eastus, westeurope …): lets signals use the batch metrics API
    # (a selector's targets take theirs from Resource Graph)
    region: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9]{2,40}$")

    @model_validator(mode="after")
    def _one_way_to_name(self) -> Target:
        if self.selector is None and not self.resource_id:
            raise ValueError("give resourceId (one resource) or selector (many)")
        if self.selector is not None:
            if self.resource_id:
                raise ValueError("give resourceId or selector, not both")
            if self.type not in GRAPH_TYPES:
                raise ValueError(
                    f"selector: a {self.type} cannot be selected (selectors find "
                    f"{', '.join(sorted(GRAPH_TYPES))}); name it with resourceId"
                )
            if self.region is not None:
                raise ValueError("region: a selector's targets take theirs from Resource Graph")
        return self

    @property
    def is_selector(self) -> bool:
        return self.selector is not None

    @field_validator("resource_id")
    @classmethod
    def _one_concrete_resource(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value  # a selector's (checked above)
        if "*" in value:
            raise ValueError("wildcards are not allowed: a policy acts on one named resource")
        kind = info.data.get("type")
        if kind not in TARGET_IDS:
            return value  # the type's own error is reported
        pattern, shape = TARGET_IDS[kind]
        if not pattern.match(value):
            raise ValueError(
                f"a {kind} is /subscriptions/{{id}}/resourceGroups/{{rg}}/providers/{shape}, "
                f"got {value!r}"
            )
        return value

    @property
    def subscription(self) -> str:
        return self.resource_id.split("/")[2]

    @property
    def metrics_id(self) -> str:
        """The resource Azure Monitor keeps this target's metrics on (a Cosmos DB
        database's or container's metrics live on its account)."""
        if self.type.startswith("cosmos"):
            match = _COSMOS_PATH.search(self.resource_id)
            assert match is not None  # validated
            return self.resource_id[: match.start("db_segment") - 1]
        return self.resource_id

    @property
    def metrics_namespace(self) -> str:
        if self.type == "azureResource":  # .../providers/{provider}/{type}/{name}
            parts = self.resource_id.split("/")
            return "/".join(parts[-3:-1])
        return METRIC_NAMESPACES[self.type]

    @property
    def cosmos_parts(self) -> tuple[str, str, str | None]:
        """(account, database, container or None) of a Cosmos DB target, read from the
        path's fixed positions (names like "containers" elsewhere do not confuse it)."""
        match = _COSMOS_PATH.search(self.resource_id)
        if match is None:
            raise ValueError(f"not a Cosmos DB SQL database or container: {self.resource_id}")
        return match["account"], match["database"], match["container"]

    @property
    def metrics_scope(self) -> str | None:
        """The dimension filter that narrows account metrics to this database/container."""
        if not self.type.startswith("cosmos"):
            return None
        _, database, container = self.cosmos_parts
        scope = f"DatabaseName eq '{database}'"
        if container is not None:
            scope += f" and CollectionName eq '{container}'"
        return scope


class ShareOf(Strict):
    """Report the filtered series as a percentage of the same metric under ``filter``
    (none: all of it) — e.g. the share of Cosmos DB requests answered 429."""

    filter: str | None = None


def _azure_grain(grain: timedelta) -> timedelta:
    if grain not in AZURE_GRAINS:
        allowed = ", ".join(format_duration(g) for g in AZURE_GRAINS)
        raise ValueError(f"Azure Monitor serves grains of {allowed}; got {format_duration(grain)}")
    return grain


class MetricSignal(Strict):
    """An Azure Monitor platform metric of the target."""

    type: Literal["azureMonitor"] = "azureMonitor"
    metric: str = Field(min_length=1)
    aggregation: Literal["Average", "Maximum", "Minimum", "Total", "Count"] = "Average"
    grain: Annotated[PositiveDuration, AfterValidator(_azure_grain)] = timedelta(minutes=1)
    filter: str | None = None  # an OData dimension filter, e.g. "revisionName eq 'api--r2'"
    namespace: str | None = None  # defaults to the target type's namespace
    share_of: ShareOf | None = None


LogTemplate = Literal[
    "requestErrorRate",  # % of requests that failed
    "requestDurationP95",  # milliseconds
    "requestDurationP99",  # milliseconds
    "dependencyFailureRate",  # % of dependency calls that failed
    "exceptionCount",  # exceptions per grain
]
_GUID = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"


class LogsSignal(Strict):
    """A Log Analytics / Application Insights query giving one number per grain.

    Either a built-in ``template`` (scoped by ``role``, the AppRoleName) or your own
    KQL ``query``, which must return one row with one number, or rows of (time, number).
    Asked of a workspace (``workspaceId``) or resource-centric (``resourceId``, e.g. an
    Application Insights component).
    """

    type: Literal["logs"]
    workspace_id: str | None = Field(default=None, pattern=_GUID)
    resource_id: str | None = Field(default=None, pattern=r"^/subscriptions/[^/]+/.+")
    template: LogTemplate | None = None
    query: str | None = Field(default=None, min_length=1)
    role: str | None = Field(default=None, pattern=r"^[\w.:/-]{1,128}$")
    grain: Annotated[PositiveDuration, AfterValidator(_azure_grain)] = timedelta(minutes=1)
    lookback: PositiveDuration | None = None  # default: the objective's window plus 3 grains

    @model_validator(mode="after")
    def _one_of_each(self) -> LogsSignal:
        if (self.workspace_id is None) == (self.resource_id is None):
            raise ValueError("give exactly one of workspaceId, resourceId")
        if (self.template is None) == (self.query is None):
            raise ValueError("give exactly one of template, query")
        if self.role is not None and self.template is None:
            raise ValueError("role scopes a template; put the filter in your query instead")
        return self


def _default_signal_type(data: Any) -> Any:
    """``signal: {metric: …}`` without a ``type`` is an Azure Monitor metric."""
    if isinstance(data, dict) and "type" not in data:
        return {"type": "azureMonitor", **data}
    return data


Signal = Annotated[
    MetricSignal | LogsSignal | PrometheusSignal | HttpProbeSignal,
    Field(discriminator="type"),
    BeforeValidator(_default_signal_type),
]


Comparison = Literal["<", "<=", ">", ">="]


class Objective(Strict):
    name: str = Field(pattern=r"^[A-Za-z][\w-]{0,62}$")
    signal: Signal
    comparison: Comparison
    threshold: float
    clear: float | None = None
    for_: PositiveDuration = Field(default=timedelta(minutes=5), alias="for")
    stale_after: PositiveDuration | None = None
    # a breach no rung can fix (quota, image pulls, firewall rules): tell a person, act not
    escalate_only: bool = False

    @model_validator(mode="after")
    def _consistent_lines(self) -> Objective:
        if self.for_ < self.signal.grain:
            raise ValueError(
                f"for: must be at least one grain ({format_duration(self.signal.grain)}), "
                f"got {format_duration(self.for_)}"
            )
        if self.stale_after is not None and self.stale_after < self.signal.grain:
            raise ValueError(
                f"staleAfter: must be at least one grain ({format_duration(self.signal.grain)}): "
                f"no sample can be newer than that, got {format_duration(self.stale_after)}"
            )
        if self.clear is not None:
            below = self.comparison in ("<", "<=")
            if below and self.clear > self.threshold:
                raise ValueError(
                    f"clear: ({self.clear:g}) must be at or below the threshold "
                    f"({self.threshold:g}) when the objective is '{self.comparison}'"
                )
            if not below and self.clear < self.threshold:
                raise ValueError(
                    f"clear: ({self.clear:g}) must be at or above the threshold "
                    f"({self.threshold:g}) when the objective is '{self.comparison}'"
                )
        return self

    @property
    def measures(self) -> str:
        """What the signal measures, in words for logs and audit lines."""
        signal = self.signal
        if isinstance(signal, MetricSignal):
            return signal.metric
        if isinstance(signal, LogsSignal):
            return signal.template or "kql"
        if isinstance(signal, PrometheusSignal):
            return "promql"
        return f"httpProbe {signal.measure}"

    @property
    def clear_line(self) -> float:
        return self.threshold if self.clear is None else self.clear

    @property
    def staleness(self) -> timedelta:
        """How old the newest sample may be before the data is unknown (3 grains)."""
        return self.stale_after or self.signal.grain * 3


def _cpu_step(value: float) -> float:
    if value not in CONTAINER_APP_CPU_STEPS:
        steps = ", ".join(f"{c:g}" for c in CONTAINER_APP_CPU_STEPS)
        raise ValueError(f"Container Apps accepts CPU of {steps} cores, got {value:g}")
    return value


CpuCores = Annotated[float, AfterValidator(_cpu_step)]


class StepOptions(Strict):
    """What every rung may say: ``approval: required`` makes it a proposal for a human."""

    approval: Literal["required", "none"] = "none"


class ScaleOut(StepOptions):
    step: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(ge=1, le=1000)


class ScaleUp(StepOptions):
    max_cpu: CpuCores
    container: str | None = None  # defaults to the first container


class RestartRevision(StepOptions):
    """Restart the latest active revision (an agent that stopped answering)."""


class RollbackRevision(StepOptions):
    """Send all traffic back to the revision that served before the newest one, when the
    breach began within ``within`` of the newest revision taking traffic (a bad deploy).
    Needs the app in multiple-revision mode."""

    within: PositiveDuration = timedelta(hours=1)


def _throughput_step(value: Any) -> Any:
    """``20%`` (of what is provisioned now) or a number of RU/s."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            number = float(text[:-1])
            if not 0 < number <= 1000:
                raise ValueError(f"a percentage step must be in (0, 1000]%, got {value!r}")
            return text
        raise ValueError(f"step is a percentage ('20%') or RU/s (1000), got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 100:
        raise ValueError(f"an RU/s step must be a whole number of at least 100, got {value!r}")
    return value


ThroughputStep = Annotated[str | int, BeforeValidator(_throughput_step)]


class RaiseThroughput(StepOptions):
    """Raise a Cosmos DB offer: manual RU/s by ``step`` (rounded up to 100), or an
    autoscale maximum (rounded up to 1,000); never above ``maxThroughput``, and never
    past ``instantMaximumThroughput`` unless ``allowPartitionSplit`` — a split takes
    hours and raises the offer's minimum for good."""

    step: ThroughputStep = "20%"
    max_throughput: int = Field(ge=400, le=10_000_000)
    allow_partition_split: bool = False


class ScaleCache(StepOptions):
    """The next Redis capacity in the same tier (C0…C6, P1…P5), up to ``maxCapacity``; past
    the tier's top only with ``allowTierChange`` (Standard → Premium of no less memory)."""

    max_capacity: int = Field(ge=0, le=6)
    allow_tier_change: bool = False


class RebootCache(StepOptions):
    """Force-reboot Redis nodes (clears wedged connections); at most once a day by default."""

    reboot_type: Literal["AllNodes", "PrimaryNode", "SecondaryNode"] = "AllNodes"
    shard_id: int | None = Field(default=None, ge=0, le=100)


StepParams = (
    ScaleOut
    | ScaleUp
    | RestartRevision
    | RollbackRevision
    | RaiseThroughput
    | ScaleCache
    | RebootCache
)
STEP_FIELDS = (
    "scale_out",
    "scale_up",
    "restart_revision",
    "rollback_revision",
    "raise_throughput",
    "scale_cache",
    "reboot_cache",
)


class Step(Strict):
    """One rung of the ladder: exactly one action keyed by its name."""

    scale_out: ScaleOut | None = None
    scale_up: ScaleUp | None = None
    restart_revision: RestartRevision | None = None
    rollback_revision: RollbackRevision | None = None
    raise_throughput: RaiseThroughput | None = None
    scale_cache: ScaleCache | None = None
    reboot_cache: RebootCache | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            names = ", ".join(to_camel(f) for f in STEP_FIELDS)
            raise ValueError(f"each step names exactly one action ({names}), got {len(data)}")
        if isinstance(data, dict):  # `- restartRevision:` with nothing after it means {}
            return {k: {} if v is None else v for k, v in data.items()}
        return data

    @property
    def action(self) -> str:
        """The action's name as written in YAML (``scaleOut`` …)."""
        for name in STEP_FIELDS:
            if getattr(self, name) is not None:
                return to_camel(name)
        raise AssertionError("validated Step has one action")

    @property
    def params(self) -> StepParams:
        for name in STEP_FIELDS:
            value = getattr(self, name)
            if value is not None:
                return value  # type: ignore[no-any-return]
        raise AssertionError("validated Step has one action")


class Bounds(Strict):
    min_replicas: int = Field(default=0, ge=0, le=1000)
    max_replicas: int | None = Field(default=None, ge=1, le=1000)
    max_cpu: CpuCores | None = None
    max_throughput: int | None = Field(default=None, ge=400, le=10_000_000)  # RU/s
    max_cache_capacity: int | None = Field(default=None, ge=0, le=6)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError("maxReplicas must be at least minReplicas")
        return self


class BreakerSettings(Strict):
    """Open after ``failures`` consecutive failed or ineffective actions, for ``openFor``."""

    failures: int = Field(default=3, ge=1, le=20)
    open_for: PositiveDuration = timedelta(minutes=30)


class ActionBudget(Strict):
    """At most ``max`` runs of ``action`` on this target in any window of ``per``."""

    action: ActionName
    max: int = Field(ge=0, le=1000)
    per: PositiveDuration


DEFAULT_ACTION_BUDGETS = (
    ActionBudget(action="restartRevision", max=1, per=timedelta(minutes=15)),
    ActionBudget(action="restartRevision", max=3, per=timedelta(days=1)),
    ActionBudget(action="rebootCache", max=1, per=timedelta(days=1)),
    # Cosmos DB bills each hour at its highest RU/s: lowering more often saves nothing
    ActionBudget(action="lowerThroughput", max=1, per=timedelta(hours=1)),
)


class Guards(Strict):
    cooldown: Duration = timedelta(minutes=5)
    max_actions_per_hour: int = Field(default=4, ge=1, le=60)
    bounds: Bounds = Field(default_factory=Bounds)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    approval_ttl: PositiveDuration = timedelta(minutes=30)  # how long an approval request lives
    # restarts ≤ 1 per 15 min and 3 a day, cache reboots 1 a day, throughput lowered at
    # most hourly — unless the policy says otherwise
    action_budgets: list[ActionBudget] = Field(default_factory=lambda: list(DEFAULT_ACTION_BUDGETS))


class Baseline(Strict):
    """The size a target returns to once healthy; never gone below."""

    min_replicas: int = Field(default=1, ge=0, le=1000)
    cpu: CpuCores | None = None  # the scaled container's baseline CPU (memory follows)
    throughput: int | None = Field(default=None, ge=100, le=10_000_000)  # Cosmos DB RU/s


class StepBack(Strict):
    """Undo scale-ups and scale-outs (or raised throughput), one step at a time, once
    healthy for ``stableFor``."""

    baseline: Baseline = Field(default_factory=Baseline)
    stable_for: PositiveDuration = timedelta(minutes=30)
    cooldown: PositiveDuration = timedelta(minutes=15)  # since the last action of any kind
    container: str | None = None  # for a cpu baseline: defaults to the first container


class Verification(Strict):
    """When and how an action is judged after it ran."""

    settle: PositiveDuration | None = None  # default: the longest 'for' plus two grains
    margin: float = Field(default=0.1, gt=0, le=1)


class DeclaredEffect(Strict):
    """What an action does to one objective's replayed values, for backtests only: the
    controller never reads it. ``value`` replaces what was recorded, ``factor``
    multiplies it; from the action on, for ``for`` (absent: to the end of the replay).
    Each run of the action applies it again: factors of overlapping runs multiply.
    A restart clearing a leak: ``{action: restartRevision, objective: memory, value: 35,
    for: 2h}``; a rollback ending a bad deploy's errors: ``{action: rollbackRevision,
    objective: error-rate, factor: 0.05}``."""

    action: str
    objective: str
    value: float | None = None
    factor: float | None = Field(default=None, ge=0)
    for_: PositiveDuration | None = Field(default=None, alias="for")

    @model_validator(mode="after")
    def _one_change(self) -> DeclaredEffect:
        if (self.value is None) == (self.factor is None):
            raise ValueError("give exactly one of value (replaces) or factor (multiplies)")
        return self


class BacktestHints(Strict):
    """How backtests model this policy's actions beyond the built-in effect model."""

    effects: list[DeclaredEffect] = Field(default_factory=list)


class Policy(Strict):
    api_version: Literal["remediator/v1"]
    kind: Literal["Policy"]
    metadata: Metadata
    target: Target
    interval: Interval | None = None
    objectives: list[Objective] = Field(min_length=1)
    remediation: list[Step] = Field(default_factory=list)
    guards: Guards = Field(default_factory=Guards)
    verification: Verification = Field(default_factory=Verification)
    step_back: StepBack | None = None  # absent: never scale back in by itself
    backtest: BacktestHints = Field(default_factory=BacktestHints)  # read by backtests only

    @property
    def settle(self) -> timedelta:
        """How long after an action its effect is judged: metrics lag, then a full window."""
        if self.verification.settle is not None:
            return self.verification.settle
        return max(o.for_ + o.signal.grain * 2 for o in self.objectives)

    @model_validator(mode="after")
    def _within_bounds(self) -> Policy:
        names = [o.name for o in self.objectives]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"objectives.{index}.name: '{name}' is used twice")
        kind = self.target.type
        for index, step in enumerate(self.remediation):
            if step.action not in LADDER_ACTIONS[kind]:
                allowed = ", ".join(sorted(LADDER_ACTIONS[kind])) or "nothing: it is watched"
                raise ValueError(
                    f"remediation.{index}.{step.action}: not an action for a {kind} "
                    f"(it can: {allowed})"
                )
            problem = _beyond_bounds(self.guards.bounds, step.params)
            if problem:
                raise ValueError(f"remediation.{index}.{step.action}.{problem}")
        if self.step_back is not None:
            self._check_step_back(self.step_back)
        actions = {step.action for step in self.remediation} | set(self.step_back_actions)
        for index, effect in enumerate(self.backtest.effects):
            where = f"backtest.effects.{index}"
            if effect.action not in actions:
                allowed = ", ".join(sorted(actions)) or "nothing"
                raise ValueError(
                    f"{where}.action: this policy never runs {effect.action} (it runs: {allowed})"
                )
            if effect.objective not in names:
                raise ValueError(
                    f"{where}.objective: no objective named {effect.objective!r} "
                    f"(there are: {', '.join(names)})"
                )
        return self

    def _check_step_back(self, rule: StepBack) -> None:
        kind = self.target.type
        if not STEP_BACK_ACTIONS[kind]:
            raise ValueError(f"stepBack: a {kind} has nothing to step back")
        cosmos = kind.startswith("cosmos")
        if cosmos and rule.baseline.throughput is None:
            raise ValueError(
                "stepBack.baseline: a Cosmos DB target steps back to baseline.throughput (RU/s)"
            )
        if not cosmos and rule.baseline.throughput is not None:
            raise ValueError("stepBack.baseline.throughput: only Cosmos DB targets have throughput")
        problem = _baseline_beyond_bounds(rule.baseline, self.guards.bounds, self.remediation)
        if problem:
            raise ValueError(f"stepBack.baseline.{problem}")

    @property
    def name(self) -> str:
        return self.metadata.name

    @cached_property
    def escalate_only(self) -> frozenset[str]:
        """Objectives watched for a person, never a reason to act."""
        return frozenset(o.name for o in self.objectives if o.escalate_only)

    @property
    def step_back_actions(self) -> tuple[str, ...]:
        """The actions stepping back may take (none without ``stepBack``)."""
        return STEP_BACK_ACTIONS[self.target.type] if self.step_back is not None else ()


def _baseline_beyond_bounds(baseline: Baseline, bounds: Bounds, ladder: list[Step]) -> str | None:
    """A baseline the bounds (or the ladder's own ceiling) forbid reaching, in ``key: why``
    form: stepping back to it would mean stepping past what the policy allows."""
    ceilings: list[tuple[str, float | None, float | None, str]] = [
        ("minReplicas", baseline.min_replicas, bounds.max_replicas, "guards.bounds.maxReplicas"),
        ("cpu", baseline.cpu, bounds.max_cpu, "guards.bounds.maxCpu"),
        ("throughput", baseline.throughput, bounds.max_throughput, "guards.bounds.maxThroughput"),
    ]
    for index, step in enumerate(ladder):
        if isinstance(step.params, RaiseThroughput):
            where = f"remediation.{index}.raiseThroughput.maxThroughput"
            ceilings.append(("throughput", baseline.throughput, step.params.max_throughput, where))
    for key, value, limit, where in ceilings:
        if value is not None and limit is not None and value > limit:
            return f"{key}: {value:g} is above {where} ({limit:g})"
    return None


def _beyond_bounds(bounds: Bounds, p: StepParams) -> str | None:
    """A rung whose own limit lies past the policy's bounds, in ``key: why`` form."""
    limits: tuple[tuple[type[StepOptions], str, str, str], ...] = (
        (ScaleOut, "max_replicas", "max_replicas", "maxReplicas"),
        (ScaleUp, "max_cpu", "max_cpu", "maxCpu"),
        (RaiseThroughput, "max_throughput", "max_throughput", "maxThroughput"),
        (ScaleCache, "max_capacity", "max_cache_capacity", "maxCacheCapacity"),
    )
    for kind, own, bound, bound_key in limits:
        limit = getattr(bounds, bound)
        if isinstance(p, kind) and limit is not None and getattr(p, own) > limit:
            return (
                f"{to_camel(own)}: {getattr(p, own):g} exceeds guards.bounds.{bound_key} "
                f"({limit:g})"
            )
    return None
