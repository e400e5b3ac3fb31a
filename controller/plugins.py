"""The built-in plug-ins, registered into a fresh :class:`~controller.registry.Registry`."""

from __future__ import annotations

from controller.actions.container_apps import ContainerAppsActuator
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.registry import Registry
from controller.signals.azure_monitor import AzureMonitorSource


def default_registry(clients: AzureClients, clock: Clock) -> Registry:
    """Azure Monitor metrics and the Container Apps actions."""
    registry = Registry()
    registry.add_signal("azureMonitor", AzureMonitorSource(clients, clock))
    apps = ContainerAppsActuator(clients, clock)
    registry.reader("containerApp")(apps.read)
    registry.action("containerApp", "scaleOut")(apps.scale_out)
    registry.action("containerApp", "scaleUp")(apps.scale_up)
    registry.action("containerApp", "restartRevision")(apps.restart_revision)
    registry.action("containerApp", "scaleIn")(apps.scale_in)
    registry.action("containerApp", "scaleDown")(apps.scale_down)
    return registry
