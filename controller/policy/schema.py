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
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controller.durations import format_duration
from controller.policy.base import Duration, PositiveDuration, Strict
from controller.sizes import CONTAINER_APP_CPU_STEPS

AZURE_GRAINS = tuple(
    timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 360, 720, 1440)
)  # PT1M … P1D: what the metrics APIs accept

CONTAINER_APP_ID = re.compile(
    r"^/subscriptions/[0-9A-Za-z-]+/resourceGroups/[-\w.()]+/providers/"
    r"Microsoft\.App/containerApps/[a-z0-9][a-z0-9-]{0,30}[a-z0-9]?$",
    re.IGNORECASE,
)


class Metadata(Strict):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
    labels: dict[str, str] = Field(default_factory=dict)


class Target(Strict):
    type: Literal["containerApp"]
    resource_id: str
    # Azure's region name (eastus, westeurope …): lets signals use the batch metrics API
    region: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9]{2,40}$")

    @field_validator("resource_id")
    @classmethod
    def _one_concrete_resource(cls, value: str) -> str:
        if "*" in value:
            raise ValueError("wildcards are not allowed: a policy acts on one named resource")
        if not CONTAINER_APP_ID.match(value):
            raise ValueError(
                "expected /subscriptions/{id}/resourceGroups/{rg}/providers/"
                f"Microsoft.App/containerApps/{{name}}, got {value!r}"
            )
        return value

    @property
    def subscription(self) -> str:
        return self.resource_id.split("/")[2]


class MetricSignal(Strict):
    """An Azure Monitor platform metric of the target."""

    type: Literal["azureMonitor"] = "azureMonitor"
    metric: str = Field(min_length=1)
    aggregation: Literal["Average", "Maximum", "Minimum", "Total", "Count"] = "Average"
    grain: PositiveDuration = timedelta(minutes=1)
    filter: str | None = None  # an OData dimension filter, e.g. "revisionName eq 'api--r2'"
    namespace: str | None = None  # defaults to the target type's namespace

    @field_validator("grain")
    @classmethod
    def _azure_grain(cls, grain: timedelta) -> timedelta:
        if grain not in AZURE_GRAINS:
            allowed = ", ".join(format_duration(g) for g in AZURE_GRAINS)
            raise ValueError(
                f"Azure Monitor serves grains of {allowed}; got {format_duration(grain)}"
            )
        return grain


Comparison = Literal["<", "<=", ">", ">="]


class Objective(Strict):
    name: str = Field(pattern=r"^[A-Za-z][\w-]{0,62}$")
    signal: MetricSignal
    comparison: Comparison
    threshold: float
    clear: float | None = None
    for_: PositiveDuration = Field(default=timedelta(minutes=5), alias="for")
    stale_after: PositiveDuration | None = None

    @model_validator(mode="after")
    def _consistent_lines(self) -> Objective:
        if self.for_ < self.signal.grain:
            raise ValueError(
                f"for: must be at least one grain ({format_duration(self.signal.grain)}), "
                f"got {format_duration(self.for_)}"
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
    pass


class Step(Strict):
    """One rung of the ladder: exactly one action keyed by its name."""

    scale_out: ScaleOut | None = None
    scale_up: ScaleUp | None = None
    restart_revision: RestartRevision | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            names = "scaleOut, scaleUp, restartRevision"
            raise ValueError(f"each step names exactly one action ({names}), got {len(data)}")
        if isinstance(data, dict):  # `- restartRevision:` with nothing after it means {}
            return {k: {} if v is None else v for k, v in data.items()}
        return data

    @property
    def action(self) -> str:
        """The action's name as written in YAML (``scaleOut`` …)."""
        for name in ("scale_out", "scale_up", "restart_revision"):
            if getattr(self, name) is not None:
                return to_camel(name)
        raise AssertionError("validated Step has one action")

    @property
    def params(self) -> ScaleOut | ScaleUp | RestartRevision:
        value = self.scale_out or self.scale_up or self.restart_revision
        assert value is not None
        return value


class Bounds(Strict):
    min_replicas: int = Field(default=0, ge=0, le=1000)
    max_replicas: int | None = Field(default=None, ge=1, le=1000)
    max_cpu: CpuCores | None = None

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

    action: Literal["scaleOut", "scaleUp", "restartRevision", "scaleIn", "scaleDown"]
    max: int = Field(ge=0, le=1000)
    per: PositiveDuration


DEFAULT_ACTION_BUDGETS = (
    ActionBudget(action="restartRevision", max=1, per=timedelta(minutes=15)),
    ActionBudget(action="restartRevision", max=3, per=timedelta(days=1)),
)


class Guards(Strict):
    cooldown: Duration = timedelta(minutes=5)
    max_actions_per_hour: int = Field(default=4, ge=1, le=60)
    bounds: Bounds = Field(default_factory=Bounds)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    approval_ttl: PositiveDuration = timedelta(minutes=30)  # how long an approval request lives
    # restarts: at most 1 per 15 minutes and 3 a day, unless the policy says otherwise
    action_budgets: list[ActionBudget] = Field(default_factory=lambda: list(DEFAULT_ACTION_BUDGETS))


class Baseline(Strict):
    """The size a target returns to once healthy; never gone below."""

    min_replicas: int = Field(default=1, ge=0, le=1000)
    cpu: CpuCores | None = None  # the scaled container's baseline CPU (memory follows)


class StepBack(Strict):
    """Undo scale-ups and scale-outs, one step at a time, once healthy for ``stableFor``."""

    baseline: Baseline = Field(default_factory=Baseline)
    stable_for: PositiveDuration = timedelta(minutes=30)
    cooldown: PositiveDuration = timedelta(minutes=15)  # since the last action of any kind
    container: str | None = None  # for a cpu baseline: defaults to the first container


class Verification(Strict):
    """When and how an action is judged after it ran."""

    settle: PositiveDuration | None = None  # default: the longest 'for' plus two grains
    margin: float = Field(default=0.1, gt=0, le=1)


class Policy(Strict):
    api_version: Literal["remediator/v1"]
    kind: Literal["Policy"]
    metadata: Metadata
    target: Target
    interval: PositiveDuration | None = None
    objectives: list[Objective] = Field(min_length=1)
    remediation: list[Step] = Field(default_factory=list)
    guards: Guards = Field(default_factory=Guards)
    verification: Verification = Field(default_factory=Verification)
    step_back: StepBack | None = None  # absent: never scale back in by itself

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
        bounds = self.guards.bounds
        for index, step in enumerate(self.remediation):
            p = step.params
            if (
                isinstance(p, ScaleOut)
                and bounds.max_replicas is not None
                and p.max_replicas > bounds.max_replicas
            ):
                raise ValueError(
                    f"remediation.{index}.scaleOut.maxReplicas: {p.max_replicas} exceeds "
                    f"guards.bounds.maxReplicas ({bounds.max_replicas})"
                )
            if isinstance(p, ScaleUp) and bounds.max_cpu is not None and p.max_cpu > bounds.max_cpu:
                raise ValueError(
                    f"remediation.{index}.scaleUp.maxCpu: {p.max_cpu:g} exceeds "
                    f"guards.bounds.maxCpu ({bounds.max_cpu:g})"
                )
        return self

    @property
    def name(self) -> str:
        return self.metadata.name
