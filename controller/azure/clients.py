"""Construct the official async Azure clients from settings, one place for all options.

The SDK's own retries are turned off (``retry_total=0``) so the controller's tenacity
policy owns retrying and the loop owns backoff; long-running operations poll at the
server's pace, or at once against the emulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from controller.config import Settings
from controller.permissions import required_action
from controller.telemetry import Metrics

if TYPE_CHECKING:  # each SDK is imported when its first client is made (~5-10 MiB apiece)
    from azure.mgmt.appcontainers.aio import ContainerAppsAPIClient
    from azure.mgmt.cosmosdb.aio import CosmosDBManagementClient
    from azure.mgmt.monitor.aio import MonitorManagementClient
    from azure.mgmt.redis.aio import RedisManagementClient
    from azure.mgmt.resource.resources.aio import ResourceManagementClient
    from azure.mgmt.resourcegraph.aio import ResourceGraphClient
    from azure.monitor.query.aio import LogsQueryClient
    from azure.monitor.querymetrics.aio import MetricsClient

ArmClient = TypeVar(
    "ArmClient",
    "ContainerAppsAPIClient",
    "MonitorManagementClient",
    "ResourceManagementClient",
    "CosmosDBManagementClient",
    "RedisManagementClient",
)


class AllowHttpPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Lets the bearer-token policy send to a plain-http emulator on loopback."""

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        request.context["enforce_https"] = False


class WriteRefused(Exception):
    """A write stopped in the pipeline, unsent: this replica could not prove, at that
    moment, that it may act (its lease's renew deadline passed)."""


class WriteGatePolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Asks, as each write is about to leave, whether it may: the last moment at which a
    replica paused since its decision can still keep from writing."""

    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        if request.http_request.method in ("GET", "HEAD"):
            return
        # each gate on its own: leader election (the replica's lease) and shards (the
        # partition's lease of the resource written) are never both on
        gate = self._clients.write_gate
        if gate is not None and (refused := gate()) is not None:
            raise WriteRefused(refused)
        owner_gate = self._clients.resource_gate
        if owner_gate is not None:
            refused = owner_gate(resource_of(request.http_request.url))
            if refused is not None:
                raise WriteRefused(refused)


def resource_of(url: str) -> str:
    """The top-level ARM resource a request URL writes to (a child resource or an
    action belongs to its parent): /subscriptions/S/resourceGroups/G/providers/NS/T/N."""
    parts = urlsplit(url).path.split("/")
    lowered = [p.lower() for p in parts]
    if "providers" in lowered:
        end = lowered.index("providers") + 4
        return "/".join(parts[:end])
    return "/".join(parts)


@dataclass
class RateLimits:
    """ARM's remaining request budget, as its last answers reported it.

    ARM's bucket refills (writes at 10 a second), and only writes report how many are
    left, so a low reading holds writes for ``hold`` wall seconds, then trusts the bucket
    again.
    """

    writes: int | None = None
    writes_at: float = 0.0  # monotonic time of the last writes reading
    hold: float = 2.0

    def low_on_writes(self, floor: int = 5) -> str | None:
        """Why writes should wait: ARM says the subscription is about to be throttled."""
        recent = time.monotonic() - self.writes_at < self.hold
        if self.writes is not None and self.writes < floor and recent:
            return f"ARM reports {self.writes} writes left; waiting for the bucket to refill"
        return None


class RateLimitPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Reads ``x-ms-ratelimit-remaining-subscription-writes`` on every answer, retries too."""

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits

    def on_response(self, request: PipelineRequest, response: Any) -> None:  # type: ignore[type-arg]
        value = response.http_response.headers.get("x-ms-ratelimit-remaining-subscription-writes")
        if value is not None and str(value).isdigit():
            self._limits.writes = int(value)
            self._limits.writes_at = time.monotonic()


class CallMetricsPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every Azure call by the RBAC action it needs and its HTTP status (retries
    included: each attempt is a call the service saw)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def _operation(self, request: PipelineRequest) -> str:  # type: ignore[type-arg]
        http = request.http_request
        path = urlsplit(http.url).path
        return required_action(http.method, path) or f"other:{http.method}"

    def on_response(self, request: PipelineRequest, response: Any) -> None:  # type: ignore[type-arg]
        status = str(response.http_response.status_code)
        self._metrics.azure_requests.labels(self._operation(request), status).inc()

    def on_exception(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        self._metrics.azure_requests.labels(self._operation(request), "error").inc()


def _options(
    settings: Settings,
    endpoint: str,
    limits: RateLimits | None = None,
    metrics: Metrics | None = None,
    gate: WriteGatePolicy | None = None,
) -> dict[str, Any]:
    timeout = settings.request_timeout.total_seconds()
    options: dict[str, Any] = {
        "retry_total": 0,
        "connection_timeout": min(timeout, 10.0),
        "read_timeout": timeout,
    }
    per_retry: list[Any] = []
    if limits is not None:
        per_retry.append(RateLimitPolicy(limits))
    if metrics is not None:
        per_retry.append(CallMetricsPolicy(metrics))
    if per_retry:
        options["per_retry_policies"] = per_retry
    per_call: list[Any] = [] if gate is None else [gate]
    if endpoint.startswith("http://"):
        per_call.append(AllowHttpPolicy())
        options["polling_interval"] = 0
    if per_call:
        options["per_call_policies"] = per_call
    return options


@dataclass
class AzureClients:
    """One set of clients per subscription, created on first use, closed together.

    Each SDK is imported with its first client: a controller that watches only
    Container Apps never loads the Cosmos DB, Redis or Resource Graph packages."""

    settings: Settings
    credential: AsyncTokenCredential
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _apps: dict[str, ContainerAppsAPIClient] = field(default_factory=dict)
    _monitor: dict[str, MonitorManagementClient] = field(default_factory=dict)
    _metrics: dict[str, MetricsClient] = field(default_factory=dict)
    _resources: dict[str, ResourceManagementClient] = field(default_factory=dict)
    _cosmos: dict[str, CosmosDBManagementClient] = field(default_factory=dict)
    _redis: dict[str, RedisManagementClient] = field(default_factory=dict)
    _logs: LogsQueryClient | None = None
    _graph: ResourceGraphClient | None = None
    rate_limits: RateLimits = field(default_factory=RateLimits)
    call_metrics: Metrics | None = None  # when set, every call is counted
    # why a write to Azure may not leave now (None: it may); asked as each write is sent
    write_gate: Callable[[], str | None] | None = None
    # the same, for the resource a write is about (shards: whether its partition is owned)
    resource_gate: Callable[[str], str | None] | None = None

    async def __aenter__(self) -> AzureClients:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()
        await self.credential.close()

    async def container_apps(self, subscription: str) -> ContainerAppsAPIClient:
        from azure.mgmt.appcontainers.aio import ContainerAppsAPIClient

        return await self._arm(ContainerAppsAPIClient, self._apps, subscription)

    async def monitor(self, subscription: str) -> MonitorManagementClient:
        """ARM metrics for one resource at a time, where the batch API cannot serve."""
        from azure.mgmt.monitor.aio import MonitorManagementClient

        return await self._arm(MonitorManagementClient, self._monitor, subscription)

    async def resources(self, subscription: str) -> ResourceManagementClient:
        """Resource groups, for the tags an operator pauses a whole group with."""
        from azure.mgmt.resource.resources.aio import ResourceManagementClient

        return await self._arm(ResourceManagementClient, self._resources, subscription)

    async def cosmos(self, subscription: str) -> CosmosDBManagementClient:
        """Cosmos DB throughput offers."""
        from azure.mgmt.cosmosdb.aio import CosmosDBManagementClient

        return await self._arm(CosmosDBManagementClient, self._cosmos, subscription)

    async def redis(self, subscription: str) -> RedisManagementClient:
        """Azure Cache for Redis."""
        from azure.mgmt.redis.aio import RedisManagementClient

        return await self._arm(RedisManagementClient, self._redis, subscription)

    async def _arm(self, kind: type[ArmClient], cache: dict[str, ArmClient], sub: str) -> ArmClient:
        """An ARM management client of ``kind`` for one subscription, made once."""
        if sub not in cache:
            ep = self.settings.endpoints()
            client = kind(
                self.credential,
                sub,
                base_url=ep.arm,
                credential_scopes=[ep.arm_audience + "/.default"],
                **_options(
                    self.settings,
                    ep.arm,
                    self.rate_limits,
                    self.call_metrics,
                    WriteGatePolicy(self),
                ),
            )
            cache[sub] = await self._stack.enter_async_context(client)
        return cache[sub]

    async def resource_graph(self) -> ResourceGraphClient:
        """Azure Resource Graph: which resources a selector covers (one client, any scope)."""
        if self._graph is None:
            from azure.mgmt.resourcegraph.aio import ResourceGraphClient

            ep = self.settings.endpoints()
            client = ResourceGraphClient(
                self.credential,
                base_url=ep.arm,
                credential_scopes=[ep.arm_audience + "/.default"],
                **_options(self.settings, ep.arm, metrics=self.call_metrics),
            )
            self._graph = await self._stack.enter_async_context(client)
        return self._graph

    async def logs(self) -> LogsQueryClient:
        """Log Analytics / Application Insights queries (one endpoint for all workspaces)."""
        if self._logs is None:
            from azure.monitor.query.aio import LogsQueryClient

            ep = self.settings.endpoints()
            client = LogsQueryClient(
                self.credential,
                endpoint=ep.logs,
                audience=ep.logs_audience,
                **_options(self.settings, ep.logs, metrics=self.call_metrics),
            )
            self._logs = await self._stack.enter_async_context(client)
        return self._logs

    async def metrics(self, region: str) -> MetricsClient:
        """The batch metrics client of a region (its endpoint is regional)."""
        if region not in self._metrics:
            from azure.monitor.querymetrics.aio import MetricsClient

            ep = self.settings.endpoints()
            endpoint = ep.metrics.replace("{region}", region)
            client = MetricsClient(
                endpoint,
                self.credential,
                audience=ep.metrics_audience,
                **_options(self.settings, endpoint, metrics=self.call_metrics),
            )
            self._metrics[region] = await self._stack.enter_async_context(client)
        return self._metrics[region]
