"""The built-in plug-ins, registered into a fresh :class:`~controller.registry.Registry`."""

from __future__ import annotations

from controller.actions.container_apps import ContainerAppsActuator
from controller.actions.cosmos import CosmosActuator
from controller.actions.redis import RedisActuator
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.model import ResourceState
from controller.policy.schema import Target
from controller.registry import Registry
from controller.signals.azure_monitor import AzureMonitorSource
from controller.signals.http_probe import HttpProbeSource
from controller.signals.logs import LogsSource
from controller.signals.prometheus import PrometheusSource


def default_registry(clients: AzureClients, clock: Clock) -> Registry:
    """Every built-in signal source, resource reader and action."""
    registry = Registry()
    registry.add_signal("azureMonitor", AzureMonitorSource(clients, clock))
    registry.add_signal("logs", LogsSource(clients, clock))
    registry.add_signal("prometheus", PrometheusSource(clock, clients.settings.prometheus_url))
    registry.add_signal("httpProbe", HttpProbeSource(clock))
    apps = ContainerAppsActuator(clients, clock)
    registry.reader("containerApp")(apps.read)
    registry.action("containerApp", "scaleOut")(apps.scale_out)
    registry.action("containerApp", "scaleUp")(apps.scale_up)
    registry.action("containerApp", "restartRevision")(apps.restart_revision)
    registry.action("containerApp", "rollbackRevision")(apps.rollback_revision)
    registry.action("containerApp", "scaleIn")(apps.scale_in)
    registry.action("containerApp", "scaleDown")(apps.scale_down)
    cosmos = CosmosActuator(clients, clock)
    for kind in ("cosmosSqlDatabase", "cosmosSqlContainer"):
        registry.reader(kind)(cosmos.read)
        registry.action(kind, "raiseThroughput")(cosmos.raise_throughput)
        registry.action(kind, "lowerThroughput")(cosmos.lower_throughput)
    redis = RedisActuator(clients, clock)
    registry.reader("redisCache")(redis.read)
    registry.action("redisCache", "scaleCache")(redis.scale_cache)
    registry.action("redisCache", "rebootCache")(redis.reboot_cache)
    registry.reader("azureResource")(_watched)
    return registry


async def _watched(target: Target) -> ResourceState:
    """A watched-only resource is never changed, so there is nothing of it to read."""
    return ResourceState(target.resource_id)
