"""Settings: a YAML file overlaid by ``REMEDIATOR_*`` environment variables.

Every key can come from either place (``auditPath`` in the file is
``REMEDIATOR_AUDIT_PATH`` in the environment); the environment wins. A bad value is
reported naming the key and where it came from, and the command exits 2.

This is a small hand-written overlay rather than pydantic-settings because errors must
name the origin of each value (file line or variable), which that library does not keep.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from difflib import get_close_matches
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from controller.model import Mode
from controller.policy.base import Interval, PositiveDuration
from controller.policy.safe_yaml import YamlRefused, check_shape, read_capped
from controller.policy.urls import CLEARTEXT_RISK, url_problem

ENV_PREFIX = "REMEDIATOR_"
TOKEN_IN_CLEAR = "or with the emulator credential (a real token must not travel in clear)"


@dataclass(frozen=True)
class CloudEndpoints:
    """Where a cloud's services live and which token audience each wants."""

    arm: str
    metrics: str  # may hold {region}: the batch metrics API is regional
    logs: str
    arm_audience: str
    metrics_audience: str
    logs_audience: str


CLOUDS: dict[str, CloudEndpoints] = {
    "public": CloudEndpoints(
        "https://management.azure.com",
        "https://{region}.metrics.monitor.azure.com",
        "https://api.loganalytics.io",
        "https://management.azure.com",
        "https://metrics.monitor.azure.com",
        "https://api.loganalytics.io",
    ),
    "china": CloudEndpoints(
        "https://management.chinacloudapi.cn",
        "https://{region}.metrics.monitor.azure.cn",
        "https://api.loganalytics.azure.cn",
        "https://management.chinacloudapi.cn",
        "https://metrics.monitor.azure.cn",
        "https://api.loganalytics.azure.cn",
    ),
    "usgov": CloudEndpoints(
        "https://management.usgovcloudapi.net",
        "https://{region}.metrics.monitor.azure.us",
        "https://api.loganalytics.us",
        "https://management.usgovcloudapi.net",
        "https://metrics.monitor.azure.us",
        "https://api.loganalytics.us",
    ),
}


class SettingsError(Exception):
    """Settings are invalid; each line names a key, its origin and the reason."""


class ClockSettings(BaseModel):
    """Scenario time, for a controller pointed at an emulator running faster than life."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False
    )
    anchor_wall: float
    anchor_scenario: datetime
    speed: float = Field(gt=0, le=10_000)

    @field_validator("anchor_scenario")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class BudgetSettings(BaseModel):
    """Budgets shared by every target: blast radius, whatever the policies say."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False
    )
    subscription_burst: int = Field(default=10, ge=1, le=10_000)
    subscription_per_hour: float = Field(default=10, gt=0, le=10_000)
    global_per_hour: int = Field(default=30, ge=1, le=100_000)


class FailStaticSettings(BaseModel):
    """When many targets break at once, the cause is rarely theirs: hold still."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False
    )
    breach_share: float = Field(default=0.45, gt=0, le=1)  # Cluster Autoscaler's 45 %
    error_share: float = Field(default=0.45, gt=0, le=1)  # signal backend failing
    min_targets: int = Field(default=3, ge=1)  # and more than this many at once
    healthy_rounds: int = Field(default=2, ge=1)  # rounds below both shares to resume


class AuditRotationSettings(BaseModel):
    """When the audit log's file is closed and a new one begun with a snapshot of the
    memory, so a start reads one bounded file whatever the history's length."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # 64 MiB
    max_age: PositiveDuration = timedelta(days=1)
    # actions a snapshot keeps (at least the longest window a policy's budget counts)
    keep_actions: PositiveDuration = timedelta(days=7)


class LeaseSettings(BaseModel):
    """Where the leases live and their timing (client-go's by default): shared by leader
    election and shards, so both obey the same URL and timing rules."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False
    )
    _section: ClassVar[str] = "leaderElection"
    enabled: bool = False
    account_url: str | None = None  # https://ACCOUNT.blob.core.windows.net (managed identity)
    connection_string: str | None = Field(default=None, repr=False)  # holds a key: never logged
    container: str = "remediator"
    lease_duration: PositiveDuration = timedelta(seconds=15)
    renew_deadline: PositiveDuration = timedelta(seconds=10)
    retry_period: PositiveDuration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _where(self) -> Self:
        if self.enabled and not (self.account_url or self.connection_string):
            raise ValueError(f"{self._section}: needs accountUrl or connectionString")
        problem = self.account_url and url_problem(self.account_url, cleartext=TOKEN_IN_CLEAR)
        if problem:
            raise ValueError(f"accountUrl: {problem}, got {self.account_url}")
        lease, renew = self.lease_duration, self.renew_deadline
        if not lease > renew > self.retry_period * 1.2:
            raise ValueError(
                f"{self._section}: needs leaseDuration > renewDeadline > 1.2 × retryPeriod"
            )
        return self


class LeaderElectionSettings(LeaseSettings):
    """One actor among replicas: a lease on a blob."""

    blob: str = "leader"
    identity: str = Field(default_factory=lambda: socket.gethostname())


class ShardSettings(LeaseSettings):
    """Replicas split the targets: a blob lease per partition, each replica acting only
    for the partitions it holds."""

    _section: ClassVar[str] = "shards"
    partitions: int = Field(default=32, ge=1, le=1024)
    prefix: str = "shards"  # blob names: <prefix>/<NNNNN> and <prefix>/replicas/<identity>
    # unique per replica: a restarted one under the same name waits out its old presence
    identity: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # one audit log per partition (partition-NNN.jsonl), on storage every replica reaches
    # (an Azure Files share): a replica that takes a partition replays its memory there
    audit_dir: Path | None = None
    # the audit log that held the estate's memory before shards (the single process's
    # auditPath): a partition log that does not exist yet starts with its share of it
    import_from: Path | None = None
    # that log's anchor (the single process's auditAnchor): the source is held to it, so
    # lines cut from its end (its head rewritten to match) are refused, not imported
    import_anchor: Path | None = None

    @model_validator(mode="after")
    def _memory(self) -> Self:
        if self.enabled and self.audit_dir is None:
            raise ValueError(
                "shards: needs auditDir, a directory every replica reaches (an Azure Files "
                "share): each partition's audit log is its memory, whoever owns it next"
            )
        if self.import_anchor is not None and self.import_from is None:
            raise ValueError(
                "shards: importAnchor is the anchor of the log importFrom names; "
                "set importFrom too, or remove importAnchor"
            )
        return self


class Settings(BaseModel):
    """What the controller needs to run; defaults are safe (dry-run, loopback)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        allow_inf_nan=False,
    )
    mode: Mode = Mode.DRY_RUN
    interval: Interval = timedelta(seconds=30)
    jitter: float = Field(default=0.1, ge=0, le=0.5)  # share of the interval
    # how often selector policies ask Resource Graph again (and on every reload)
    discovery_interval: Interval = timedelta(minutes=5)
    # a selector's last good set older than this (no answer believed since) keeps its
    # targets observing but holds their actions; default 6 discovery intervals, at least 2
    discovery_stale_after: Interval | None = None
    policies: list[Path] = Field(default_factory=lambda: [Path("policies")])
    audit_path: Path = Path("remediator-audit.jsonl")
    # seal the audit log with HMAC-SHA256: the key itself (REMEDIATOR_AUDIT_KEY, never
    # logged) or a file holding it (a Key Vault secret mounted as a file)
    audit_key: str | None = Field(default=None, repr=False, min_length=16)
    audit_key_file: Path | None = None
    audit_anchor: Path | None = None  # copy each line's (seq, hash) here: other storage
    pause: bool = False  # REMEDIATOR_PAUSE=true: no action anywhere
    pause_file: Path | None = None  # default: remediator.pause beside the audit log
    cloud: Literal["public", "china", "usgov", "custom"] = "public"
    arm_endpoint: str | None = None
    metrics_endpoint: str | None = None
    logs_endpoint: str | None = None
    prometheus_url: str | None = None  # the default server for prometheus signals
    # default: DefaultAzureCredential; managedIdentity: that alone (optionally a
    # user-assigned identity's client id); emulator: the local emulator's fixed token
    credential: Literal["default", "managedIdentity", "emulator"] = "default"
    identity_client_id: str | None = None
    listen: str | None = "127.0.0.1:9464"
    request_timeout: PositiveDuration = timedelta(seconds=30)
    backoff_max: PositiveDuration = timedelta(minutes=10)
    action_deadline: PositiveDuration = timedelta(minutes=5)  # an update that never finishes
    clock: ClockSettings | None = None
    # a Teams/Slack incoming webhook or an action group: holds a secret, never logged
    escalation_webhook: str | None = Field(default=None, repr=False)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    shards: ShardSettings = Field(default_factory=ShardSettings)
    fail_static: FailStaticSettings = Field(default_factory=FailStaticSettings)
    audit_rotation: AuditRotationSettings = Field(default_factory=AuditRotationSettings)

    @field_validator("policies", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(os.pathsep) if part.strip()]
        if isinstance(value, list) and not value:
            raise ValueError("is empty: name at least one policy file or folder")
        return value

    @field_validator(
        "arm_endpoint", "metrics_endpoint", "logs_endpoint", "escalation_webhook", "prometheus_url"
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("listen", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted ``listen: off`` as false: it means off."""
        return None if value is False else value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value in (None, "", "off"):
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT or 'off', got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_way_to_share(self) -> Settings:
        if self.leader_election.enabled and self.shards.enabled:
            raise ValueError(
                "leaderElection and shards are exclusive: one leader acts for every target, "
                "or each replica for its partitions; enable one"
            )
        source = self.shards.import_from
        if self.shards.enabled and source is not None and _same(source, self.audit_path):
            raise ValueError(
                f"shards.importFrom is this replica's own auditPath ({source}): the log to "
                "import is only read, and each replica writes a log of its own; give "
                "auditPath a new file (e.g. per replica) and keep importFrom on the old one"
            )
        anchor = self.shards.import_anchor
        if (
            self.shards.enabled
            and anchor
            and self.audit_anchor
            and _same(anchor, self.audit_anchor)
        ):
            raise ValueError(
                f"shards.importAnchor is this replica's own auditAnchor ({anchor}): the "
                "source's anchor is only read; give auditAnchor a new file"
            )
        return self

    @model_validator(mode="after")
    def _stale_after_intervals(self) -> Settings:
        stale = self.discovery_stale_after
        if stale is not None and stale < 2 * self.discovery_interval:
            raise ValueError(
                f"discoveryStaleAfter ({stale}) must be at least two discoveryIntervals "
                f"({2 * self.discovery_interval}): one answer not believed is no reason to "
                "hold a selector's targets"
            )
        return self

    @property
    def discovery_hold_after(self) -> timedelta:
        """How old a selector's last good set may be before its targets' actions are held."""
        return self.discovery_stale_after or 6 * self.discovery_interval

    @model_validator(mode="after")
    def _safe_endpoints(self) -> Settings:
        if self.cloud == "custom" and not (self.arm_endpoint and self.metrics_endpoint):
            raise ValueError(
                "cloud: 'custom' needs armEndpoint and metricsEndpoint; "
                "it never falls back to public Azure"
            )
        token = None if self.credential == "emulator" else TOKEN_IN_CLEAR
        for key, url, cleartext, shown in (
            ("armEndpoint", self.arm_endpoint, token, True),
            ("metricsEndpoint", self.metrics_endpoint, token, True),
            ("logsEndpoint", self.logs_endpoint, token, True),
            ("prometheusUrl", self.prometheus_url, CLEARTEXT_RISK, True),
            ("escalationWebhook", self.escalation_webhook, CLEARTEXT_RISK, False),  # a secret
        ):
            problem = url and url_problem(url, cleartext=cleartext)
            if problem:
                raise ValueError(f"{key}: {problem}" + (f", got {url}" if shown else ""))
        return self

    def endpoints(self) -> CloudEndpoints:
        """The cloud's endpoints with any explicit overrides applied."""
        base = CLOUDS.get(self.cloud, CLOUDS["public"])
        return CloudEndpoints(
            arm=self.arm_endpoint or base.arm,
            metrics=self.metrics_endpoint or base.metrics,
            logs=self.logs_endpoint or base.logs,
            arm_audience=base.arm_audience if self.cloud != "custom" else CLOUDS["public"].arm,
            metrics_audience=base.metrics_audience,
            logs_audience=base.logs_audience,
        )

    @property
    def approvals_path(self) -> Path:
        """Where ``remediator approve`` / ``reject`` leave their answers: beside the audit
        log, or with shards in the audit directory every replica reads (a request is in
        its partition's log, whichever replica owns it)."""
        if self.shards.enabled and self.shards.audit_dir is not None:
            return self.shards.audit_dir / "remediator.approvals"
        return self.audit_path.with_name(self.audit_path.name + ".approvals")

    @property
    def pause_path(self) -> Path:
        return self.pause_file or self.audit_path.with_name("remediator.pause")

    @property
    def listen_address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the file (if any), overlay the environment, then explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path is not None:
        values, origins = _read_file(Path(path))
    known = {to_camel(name): name for name in Settings.model_fields}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        suffix = var.removeprefix(ENV_PREFIX)
        key = to_camel(to_snake(suffix.lower()))
        if key not in known:
            if suffix in _RESERVED_ENV or suffix.startswith(_SERVICE_LINK_PREFIXES):
                continue
            raise SettingsError(f"{var}: unknown setting (from the environment)")
        try:
            values[key] = json.loads(raw) if raw.lstrip().startswith("{") else raw
        except (ValueError, RecursionError) as exc:  # broken, or nested past any meaning
            raise SettingsError(f"{var}: invalid JSON: {exc}") from None
        origins[key] = f"environment variable {var}"
    for key, value in (overrides or {}).items():
        values[to_camel(key)] = value
        origins[to_camel(key)] = "command line"
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"]) or "settings"
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            reason = str(reason).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
                keys = [f.alias or name for name, f in Settings.model_fields.items()]
                close = get_close_matches(str(error["loc"][0]), keys, n=1, cutoff=0.75)
                reason += f" (did you mean '{close[0]}'?)" if close else ""
            named = re.match(r"^(\w+): (.*)$", reason, re.S)
            if not error["loc"] and named:  # a cross-key rule names the key it is about
                key, reason = named.group(1), named.group(2)
            origin = origins.get(key.split(".")[0], "default")
            lines.append(f"{key}: {reason} (from {origin})")
        raise SettingsError("\n".join(lines)) from None


# Variables read elsewhere are not settings keys.
_RESERVED_ENV = frozenset({"LOG_LEVEL", "LOG_FORMAT", "CONFIG"})
# A Kubernetes Service named "remediator" injects REMEDIATOR_PORT, REMEDIATOR_SERVICE_HOST …
_SERVICE_LINK_PREFIXES = ("PORT", "SERVICE_")


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        text = read_capped(path)
        check_shape(text)  # size, depth and aliases bounded, as for policies
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read settings: {exc}") from None
    except YamlRefused as exc:
        raise SettingsError(f"{path}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise SettingsError(f"{path}:{line}: YAML syntax error: {exc.problem}") from None
    if data is None or node is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise SettingsError(f"{path}:1: settings must be a mapping of keys to values")
    origins = {str(k.value): f"{path}:{k.start_mark.line + 1}" for k, _ in node.value}
    return _relative_to(path.parent, dict(data)), origins


def _relative_to(folder: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Paths in a settings file are relative to the file, as a reader would expect."""
    policies = data.get("policies")
    if isinstance(policies, str):
        policies = [policies]
    if isinstance(policies, list):
        data["policies"] = [str(folder / p) if isinstance(p, str) else p for p in policies]
    for key in ("auditPath", "pauseFile", "auditKeyFile", "auditAnchor"):
        if isinstance(data.get(key), str):
            data[key] = str(folder / data[key])
    shards = data.get("shards")
    if isinstance(shards, dict):
        for key in ("auditDir", "importFrom", "importAnchor"):
            if isinstance(shards.get(key), str):
                shards = {**shards, key: str(folder / shards[key])}
        data["shards"] = shards
    return data


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file (symlinks and ``..`` resolved; neither need exist)."""
    return os.path.realpath(a) == os.path.realpath(b)
