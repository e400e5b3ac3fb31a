"""Container Apps actions through ``azure-mgmt-appcontainers`` (aio).

Each action re-reads the app, writes only what differs from the proposal's target
(so a repeated or replayed action is a no-op), waits for the long-running operation,
and reads back what is now there for the audit's ``after``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.mgmt.appcontainers.models import ContainerApp

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.model import ContainerSize, Outcome, OutcomeKind, Proposal, ResourceState
from controller.policy.schema import Target

_READ_ONLY_RESOURCE_FIELDS = ("ephemeralStorage",)


def split_id(resource_id: str) -> tuple[str, str, str]:
    """``/subscriptions/S/resourceGroups/RG/providers/…/NAME`` → (S, RG, NAME)."""
    parts = resource_id.strip("/").split("/")
    return parts[1], parts[3], parts[-1]


class ContainerAppsActuator:
    """Reads and changes Container Apps."""

    def __init__(self, clients: AzureClients, clock: Clock) -> None:
        self._clients = clients
        self._clock = clock

    async def read(self, target: Target) -> ResourceState:
        """The app's scale and sizes, and how many replicas its latest revision runs."""
        app = await self._get(target.resource_id)
        state = to_state(target.resource_id, app)
        if state.latest_revision is None:
            return state
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.container_apps(sub)
        revision = await retry.call(
            self._clock,
            lambda: client.container_apps_revisions.get_revision(
                rg, name, state.latest_revision or ""
            ),
        )
        return replace(state, replicas=revision.replicas)

    async def _get(self, resource_id: str) -> ContainerApp:
        sub, rg, name = split_id(resource_id)
        client = await self._clients.container_apps(sub)
        return await retry.call(self._clock, lambda: client.container_apps.get(rg, name))

    async def _patch(self, resource_id: str, envelope: dict[str, Any]) -> ContainerApp:
        sub, rg, name = split_id(resource_id)
        client = await self._clients.container_apps(sub)

        async def update() -> ContainerApp:
            # A model built from the mapping serialises exactly the keys given: a merge patch.
            poller = await client.container_apps.begin_update(rg, name, ContainerApp(envelope))
            result: ContainerApp = await poller.result()
            return result

        return await retry.call(self._clock, update, write=True)

    async def scale_out(self, target: Target, proposal: Proposal) -> Outcome:
        """Raise ``minReplicas`` (and ``maxReplicas`` only as far as needed)."""
        before = to_state(target.resource_id, await self._get(target.resource_id))
        wanted_min = int(proposal.params["minReplicas"])
        wanted_max = max(int(proposal.params["maxReplicas"]), wanted_min)
        scale: dict[str, int] = {}
        if before.min_replicas < wanted_min:
            scale["minReplicas"] = wanted_min
        if before.max_replicas < wanted_max:
            scale["maxReplicas"] = wanted_max
        return await self._apply_scale(target, proposal, before, {"scale": scale} if scale else {})

    async def scale_in(self, target: Target, proposal: Proposal) -> Outcome:
        """Lower ``minReplicas`` one step toward the baseline (never raises it)."""
        before = to_state(target.resource_id, await self._get(target.resource_id))
        wanted = int(proposal.params["minReplicas"])
        scale = {"minReplicas": wanted} if before.min_replicas > wanted else {}
        return await self._apply_scale(target, proposal, before, {"scale": scale} if scale else {})

    async def scale_up(self, target: Target, proposal: Proposal) -> Outcome:
        """Give one container the next CPU/memory pair, resending the whole container list."""
        return await self._resize(target, proposal, larger=True)

    async def scale_down(self, target: Target, proposal: Proposal) -> Outcome:
        """Give one container the previous CPU/memory pair, toward the baseline."""
        return await self._resize(target, proposal, larger=False)

    async def _resize(self, target: Target, proposal: Proposal, *, larger: bool) -> Outcome:
        app = await self._get(target.resource_id)
        before = to_state(target.resource_id, app)
        name = str(proposal.params["container"])
        cpu = float(proposal.params["cpu"])
        memory = str(proposal.params["memory"])
        containers = [c.as_dict() for c in (app.template.containers if app.template else []) or []]
        changed = False
        for container in containers:
            if container.get("name") != name:
                continue
            resources = {
                k: v
                for k, v in (container.get("resources") or {}).items()
                if k not in _READ_ONLY_RESOURCE_FIELDS
            }
            current = float(resources.get("cpu") or 0)
            if (current < cpu) if larger else (current > cpu):
                resources.update({"cpu": cpu, "memory": memory})
                changed = True
            container["resources"] = resources
        if not any(c.get("name") == name for c in containers):
            seen = view(before, proposal)
            return Outcome(OutcomeKind.FAILED, seen, seen, f"container {name!r} not found")
        return await self._apply_scale(
            target, proposal, before, {"containers": containers} if changed else {}
        )

    async def _apply_scale(
        self,
        target: Target,
        proposal: Proposal,
        before: ResourceState,
        template: dict[str, Any],
    ) -> Outcome:
        if not template:
            seen = view(before, proposal)
            return Outcome(OutcomeKind.SUCCEEDED, seen, seen, "already as proposed")
        await self._patch(target.resource_id, {"properties": {"template": template}})
        after = to_state(target.resource_id, await self._get(target.resource_id))
        return Outcome(OutcomeKind.SUCCEEDED, view(before, proposal), view(after, proposal))

    async def restart_revision(self, target: Target, proposal: Proposal) -> Outcome:
        """Restart the latest active revision (found afresh, not trusted from the plan)."""
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.container_apps(sub)

        async def latest_active() -> str | None:
            newest: tuple[datetime, str] | None = None
            async for revision in client.container_apps_revisions.list_revisions(rg, name):
                if not revision.active or not revision.name:
                    continue
                created = revision.created_time or datetime.min
                if newest is None or created.replace(tzinfo=None) > newest[0]:
                    newest = (created.replace(tzinfo=None), revision.name)
            return newest[1] if newest else None

        revision = await retry.call(self._clock, latest_active)
        if revision is None:
            return Outcome(OutcomeKind.FAILED, {}, {}, "no active revision to restart")
        await retry.call(
            self._clock,
            lambda: client.container_apps_revisions.restart_revision(rg, name, revision),
            write=True,
        )
        state = {"revision": revision}
        return Outcome(OutcomeKind.SUCCEEDED, state, {**state, "restarted": True})


def view(state: ResourceState, proposal: Proposal) -> dict[str, Any]:
    """The state in the proposal's own terms, so audit ``before``/``after`` read the same
    in dry-run (the proposal's view) and live (what Azure reports)."""
    if "container" in proposal.after:
        for c in state.containers:
            if c.name == proposal.after["container"]:
                return {"container": c.name, "cpu": c.cpu, "memory": c.memory}
        return {"container": proposal.after["container"]}
    summary = state.summary()
    return {k: summary[k] for k in proposal.after if k in summary}


def to_state(resource_id: str, app: ContainerApp) -> ResourceState:
    """The planner's view of a Container App."""
    template = app.template
    scale = template.scale if template else None
    containers = tuple(
        ContainerSize(
            name=c.name or "",
            cpu=float(c.resources.cpu or 0) if c.resources else 0.0,
            memory=str(c.resources.memory or "") if c.resources else "",
        )
        for c in ((template.containers if template else None) or [])
    )
    return ResourceState(
        resource_id=resource_id,
        min_replicas=int(scale.min_replicas or 0) if scale else 0,
        max_replicas=int(scale.max_replicas or 10) if scale else 10,
        containers=containers,
        latest_revision=app.latest_ready_revision_name or app.latest_revision_name,
        tags=dict(app.tags or {}),
    )
