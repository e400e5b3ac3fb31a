"""Container Apps actions through ``azure-mgmt-appcontainers`` (aio).

Each action re-reads the app, writes only what differs from the proposal's target
(so a repeated or replayed action is a no-op), waits for the long-running operation,
and reads back what is now there for the audit's ``after``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from azure.core.exceptions import HttpResponseError

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.core.plan import serving_revision
from controller.model import (
    ContainerSize,
    Outcome,
    OutcomeKind,
    Proposal,
    ResourceState,
    RevisionInfo,
)
from controller.policy.schema import Target

if TYPE_CHECKING:  # the SDK is imported with the first Container Apps client (AzureClients)
    from azure.mgmt.appcontainers.models import ContainerApp, Template, TrafficWeight

_READ_ONLY_RESOURCE_FIELDS = ("ephemeralStorage",)
CONFLICT_ATTEMPTS = 3  # reads and recomputes after an ETag conflict (412) before giving up

# From the app as just read (and its planner view): the ``properties`` to merge-patch,
# {} when it is already as proposed, or an Outcome when the change cannot be made.
Change = Callable[["ContainerApp", ResourceState], "dict[str, Any] | Outcome"]


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
        """The app's scale and sizes, how many replicas its latest revision runs, and —
        in multiple-revision mode — every revision with its traffic (for rollback)."""
        app = await self._get(target.resource_id)
        state = to_state(target.resource_id, app)
        if state.latest_revision is None:
            return state
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.container_apps(sub)
        if state.multiple_revisions:

            async def revisions() -> tuple[RevisionInfo, ...]:
                found = [
                    RevisionInfo(
                        r.name,
                        _utc(r.created_time),
                        bool(r.active),
                        int(r.traffic_weight or 0),
                        _healthy(r.health_state),
                        build_of(r.template),
                    )
                    async for r in client.container_apps_revisions.list_revisions(rg, name)
                    if r.name
                ]
                return tuple(found)

            state = replace(state, revisions=await retry.call(self._clock, revisions))
        serving = serving_revision(state) or ""  # what runs for users: its replicas count
        revision = await retry.call(
            self._clock,
            lambda: client.container_apps_revisions.get_revision(rg, name, serving),
        )
        return replace(state, replicas=revision.replicas)

    async def _get(self, resource_id: str) -> ContainerApp:
        app, _ = await self._get_versioned(resource_id)
        return app

    async def _get_versioned(self, resource_id: str) -> tuple[ContainerApp, str | None]:
        """The app and the ETag it was served with (None where the service sends none)."""
        sub, rg, name = split_id(resource_id)
        client = await self._clients.container_apps(sub)

        def with_etag(response: Any, app: ContainerApp, _: Any) -> tuple[ContainerApp, str | None]:
            return app, response.http_response.headers.get("ETag")

        async def get() -> tuple[ContainerApp, str | None]:
            # ``cls`` changes what get() returns; the SDK's stubs cannot say so
            versioned = await client.container_apps.get(rg, name, cls=with_etag)
            return cast("tuple[ContainerApp, str | None]", versioned)

        return await retry.call(self._clock, get)

    async def _patch(
        self, resource_id: str, envelope: dict[str, Any], etag: str | None
    ) -> ContainerApp:
        """Send a merge patch, conditional on the version read when there is one."""
        sub, rg, name = split_id(resource_id)
        client = await self._clients.container_apps(sub)
        headers = {"If-Match": etag} if etag else {}

        from azure.mgmt.appcontainers.models import ContainerApp

        async def update() -> ContainerApp:
            # A model built from the mapping serialises exactly the keys given: a merge patch.
            poller = await client.container_apps.begin_update(
                rg, name, ContainerApp(envelope), headers=headers
            )
            result: ContainerApp = await poller.result()
            return result

        return await retry.call(self._clock, update, write=True)

    async def _update(self, target: Target, proposal: Proposal, change: Change) -> Outcome:
        """Read, compute the change from what is there, write it if-match; on 412 start over.

        A 412 means someone else changed the app between our read and our write: the
        change is recomputed from a fresh read (which may find nothing left to do), never
        forced over theirs.
        """
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            app, etag = await self._get_versioned(target.resource_id)
            before = to_state(target.resource_id, app)
            planned = change(app, before)
            if isinstance(planned, Outcome):
                return planned
            if not planned:
                seen = view(before, proposal)
                return Outcome(OutcomeKind.SUCCEEDED, seen, seen, "already as proposed")
            try:
                await self._patch(target.resource_id, {"properties": planned}, etag)
            except HttpResponseError as exc:
                if exc.status_code != 412 or attempt == CONFLICT_ATTEMPTS:
                    raise
                continue
            after = to_state(target.resource_id, await self._get(target.resource_id))
            note = f"re-read after {attempt - 1} conflicting change(s)" if attempt > 1 else ""
            return Outcome(
                OutcomeKind.SUCCEEDED, view(before, proposal), view(after, proposal), note
            )
        raise AssertionError("the loop returns or raises")

    async def scale_out(self, target: Target, proposal: Proposal) -> Outcome:
        """Raise ``minReplicas`` (and ``maxReplicas`` only as far as needed)."""
        wanted_min = int(proposal.params["minReplicas"])
        wanted_max = max(int(proposal.params["maxReplicas"]), wanted_min)

        def change(_: ContainerApp, before: ResourceState) -> dict[str, Any]:
            scale: dict[str, int] = {}
            if before.min_replicas < wanted_min:
                scale["minReplicas"] = wanted_min
            if before.max_replicas < wanted_max:
                scale["maxReplicas"] = wanted_max
            return {"template": {"scale": scale}} if scale else {}

        return await self._update(target, proposal, change)

    async def scale_in(self, target: Target, proposal: Proposal) -> Outcome:
        """Lower ``minReplicas`` one step toward the baseline (never raises it)."""
        wanted = int(proposal.params["minReplicas"])

        def change(_: ContainerApp, before: ResourceState) -> dict[str, Any]:
            if before.min_replicas <= wanted:
                return {}
            return {"template": {"scale": {"minReplicas": wanted}}}

        return await self._update(target, proposal, change)

    async def scale_up(self, target: Target, proposal: Proposal) -> Outcome:
        """Give one container the next CPU/memory pair, resending the whole container list."""
        return await self._resize(target, proposal, larger=True)

    async def scale_down(self, target: Target, proposal: Proposal) -> Outcome:
        """Give one container the previous CPU/memory pair, toward the baseline."""
        return await self._resize(target, proposal, larger=False)

    async def _resize(self, target: Target, proposal: Proposal, *, larger: bool) -> Outcome:
        name = str(proposal.params["container"])
        cpu = float(proposal.params["cpu"])
        memory = str(proposal.params["memory"])

        def change(app: ContainerApp, before: ResourceState) -> dict[str, Any] | Outcome:
            template = app.template
            containers = [c.as_dict() for c in (template.containers if template else []) or []]
            if not any(c.get("name") == name for c in containers):
                seen = view(before, proposal)
                return Outcome(OutcomeKind.FAILED, seen, seen, f"container {name!r} not found")
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
            return {"template": {"containers": containers}} if changed else {}

        return await self._update(target, proposal, change)

    async def rollback_revision(self, target: Target, proposal: Proposal) -> Outcome:
        """Send all ingress traffic to the proposed (older) revision, conditional on the
        version read. Traffic that moved since the plan (a fix deployed meanwhile, a
        revision of someone else's taking traffic) is theirs: the rollback stands down."""
        good = str(proposal.params["revision"])
        bad = str(proposal.params.get("from", ""))

        def change(app: ContainerApp, before: ResourceState) -> dict[str, Any] | Outcome:
            ingress = app.configuration.ingress if app.configuration else None
            weights: dict[str, int] = {}
            for w in ingress.traffic if ingress and ingress.traffic else []:
                # latestRevision: the newest ready revision serves that share
                served = app.latest_ready_revision_name if w.latest_revision else w.revision_name
                if served:
                    weights[served] = weights.get(served, 0) + int(w.weight or 0)
            seen = {"traffic": weights}
            if ingress is None:
                return Outcome(OutcomeKind.FAILED, seen, seen, "the app has no ingress")
            if weights == {good: 100}:
                return {}
            serving = {name for name, weight in weights.items() if weight > 0}
            if bad not in serving or serving - {good, bad}:
                detail = f"traffic changed since the plan ({weights}); not rolling back"
                return Outcome(OutcomeKind.FAILED, seen, seen, detail, busy=True)
            traffic = [{"revisionName": good, "weight": 100}]
            return {"configuration": {"ingress": {"traffic": traffic}}}

        return await self._update(target, proposal, change)

    async def restart_revision(self, target: Target, proposal: Proposal) -> Outcome:
        """Restart the latest active revision (found afresh, not trusted from the plan)."""
        sub, rg, name = split_id(target.resource_id)
        client = await self._clients.container_apps(sub)

        async def latest_active() -> str | None:
            """The newest active revision — among those taking traffic, when any does (a
            0 % staging revision is not the one users are failing on)."""
            newest: tuple[datetime, str] | None = None
            revisions = [
                r
                async for r in client.container_apps_revisions.list_revisions(rg, name)
                if r.active and r.name
            ]
            serving = [r for r in revisions if (r.traffic_weight or 0) > 0]
            for revision in serving or revisions:
                if not revision.name:
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
    configuration = app.configuration
    ingress = configuration.ingress if configuration else None
    raw_mode = configuration.active_revisions_mode if configuration else None
    mode = str(getattr(raw_mode, "value", raw_mode) or "").lower()  # an enum or a string
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
        newest_revision=app.latest_revision_name,
        tags=dict(app.tags or {}),
        multiple_revisions=mode == "multiple",
        traffic_pinned=mode == "multiple" and _pinned(ingress.traffic if ingress else None),
        revisions=tuple(
            RevisionInfo(w.revision_name, None, True, int(w.weight or 0))
            for w in (ingress.traffic if ingress and ingress.traffic else [])
            if w.revision_name
        ),
        last_modified=_utc(app.system_data.last_modified_at) if app.system_data else None,
    )


def _pinned(traffic: list[TrafficWeight] | None) -> bool:
    """Traffic on named revisions only: none of it follows ``latestRevision``."""
    if not traffic:
        return False
    return not any(w.latest_revision and (w.weight or 0) > 0 for w in traffic)


def build_of(template: Template | None) -> str | None:
    """What makes a revision a deploy: each container's image and settings (env, command,
    args, probes, mounts), its size left out; the scale is not part of it either."""
    if template is None or not template.containers:
        return None
    parts = []
    for c in template.containers:
        fields = c.as_dict()
        fields.pop("resources", None)
        parts.append(json.dumps(fields, sort_keys=True, default=str))
    return "|".join(sorted(parts))


def _healthy(state: object) -> bool | None:
    """The revision's health as the platform reports it (an enum or a string)."""
    text = str(getattr(state, "value", state) or "").lower()
    return {"healthy": True, "unhealthy": False}.get(text)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
