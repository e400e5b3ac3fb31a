"""The mutable emulated estate that the HTTP routes read and change.

It owns the resources, pending long-running operations, faults, the request log and
the write counter, and reads scenario time only through the injected ``now``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .containerapp import (
    AppResource,
    PatchError,
    app_json,
    config_from_json,
    containers_json,
    traffic_from_json,
)
from .cosmos import CosmosAccount, CosmosOffer, CosmosOperation
from .faults import Fault, FaultSet
from .graph import Quota, Results
from .merge_patch import merge_patch
from .metered import Metered
from .redis import RedisCache
from .revisions import Revision
from .scenario import ResourceSpec, Scenario
from .timeutil import MINUTE, floor_minute, format_datetime
from .workload import AppConfig, AppModel, Container, Demand


@dataclass
class Operation:
    """An accepted PATCH. As in Azure, the change proceeds after the 202 whether or not
    anyone polls: it lands at ``due`` (or sooner, once polled ``lro_polls`` times)."""

    id: str
    resource: AppResource
    patch: dict[str, Any]
    location: str
    created: datetime
    due: datetime
    fail: bool = False
    polls: int = 0
    status: str = "InProgress"
    error: dict[str, str] | None = None
    ended: datetime | None = None


@dataclass
class World:
    scenario: Scenario
    now: Callable[[], datetime]
    lro_polls: int = 1
    lro_retry_after: int = 0  # seconds asked between polls (real services ask 1–30)
    wobble: float = 0.005
    # where a Container Apps PATCH's Azure-AsyncOperation points: the published example
    # answers with containerappOperationResults, the service also with
    # containerappOperationStatuses (both are served)
    lro_path: str = "containerappOperationResults"
    resources: dict[str, AppResource] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    in_flight: list[Operation] = field(default_factory=list)  # accepted, not yet ended
    faults: FaultSet = field(default_factory=FaultSet)
    requests: list[dict[str, Any]] = field(default_factory=list)
    writes: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    group_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # by lower-case RG
    # other kinds' resources with metrics (Cosmos DB accounts, Redis caches), by lower-case id
    extra_metered: list[dict[str, Any]] = field(default_factory=list)
    offers: dict[str, CosmosOffer] = field(default_factory=dict)  # by lower-case resource id
    accounts: dict[str, CosmosAccount] = field(default_factory=dict)
    cosmos_ops: dict[str, CosmosOperation] = field(default_factory=dict)
    cosmos_in_flight: list[CosmosOperation] = field(default_factory=list)
    caches_scaling: list[RedisCache] = field(default_factory=list)
    caches: dict[str, RedisCache] = field(default_factory=dict)  # by lower-case resource id
    graph_quota: Quota = field(default_factory=Quota)  # Resource Graph's per-user quota
    graph_results: Results = field(default_factory=Results)  # kept for their skip tokens

    # indexes, so a lookup costs the same in an estate of 10 or 10,000 resources
    _metered: dict[str, Metered] = field(default_factory=dict)  # by lower-case metrics id
    _by_name: dict[str, AppResource] = field(default_factory=dict)  # first app of a name
    # "/subscriptions/s/resourcegroups/rg" → the location of its first resource
    _groups: dict[str, str] = field(default_factory=dict)
    _by_subscription: dict[str, dict[str, Any]] = field(default_factory=dict)  # graph scope

    def __post_init__(self) -> None:
        start = self.scenario.start
        events: dict[str, list[tuple[datetime, dict[str, float]]]] = {}
        for e in self.scenario.timeline:
            events.setdefault(e.resource, []).append((start + e.at, e.changes))
        for spec in self.scenario.resources:
            self._add_app(spec, events.get(spec.name, []))
        for offer_spec in self.scenario.offers:
            ru_demand = [
                (at, changes["ru_demand"])
                for at, changes in events.get(offer_spec.name, [])
                if "ru_demand" in changes
            ]
            offer = CosmosOffer(offer_spec, start, ru_demand)
            self.offers[offer_spec.resource_id.lower()] = offer
            account = self.accounts.get(offer_spec.account_id.lower())
            if account is None:
                account = CosmosAccount(offer_spec.account_id, offer_spec.location)
                self.accounts[offer_spec.account_id.lower()] = account
                self._index(account.metrics_id, account)
            account.offers.append(offer)
        self.extra_metered.append(self.accounts)
        for cache_spec in self.scenario.caches:
            workload = events.get(cache_spec.name, [])
            cache = RedisCache(cache_spec, start, workload)
            self.caches[cache_spec.resource_id.lower()] = cache
            self._index(cache.resource_id, cache)
        self.extra_metered.append(self.caches)
        for f in self.scenario.faults:
            end = start + f.at + f.duration if f.duration is not None else None
            self.faults.add(Fault(f.kind, start + f.at, end, dict(f.params), "scenario"))

    def _index(self, resource_id: str, res: Any) -> None:
        key = resource_id.lower()
        parts = key.split("/")  # "", subscriptions, S, resourcegroups, RG, ...
        self._groups.setdefault("/".join(parts[:5]), res.location)
        self._by_subscription.setdefault(parts[2], {})[key] = res
        if hasattr(res, "metrics_id"):
            self._metered[res.metrics_id.lower()] = res

    def _add_app(
        self, spec: ResourceSpec, changes: list[tuple[datetime, dict[str, float]]]
    ) -> AppResource:
        start = self.scenario.start
        config = AppConfig(
            spec.min_replicas,
            spec.max_replicas,
            tuple(Container(c.name, c.image, c.cpu, c.memory) for c in spec.containers),
        )
        wl = spec.workload
        demand = Demand(
            wl.cpu_demand_cores,
            wl.base_memory_mib,
            wl.leak_mib_per_minute,
            wl.cpu_demand_per_replica,
            wl.requests_per_minute,
        )
        model = AppModel(spec.resource_id.lower(), start, config, demand, changes, self.wobble)
        res = AppResource(spec, model, dict(spec.tags))
        res.created = start + spec.created_at if spec.created_at is not None else None
        res.deleted = start + spec.deleted_at if spec.deleted_at is not None else None
        self.resources[spec.resource_id.lower()] = res
        self._by_name.setdefault(spec.name.lower(), res)
        self._index(spec.resource_id, res)
        return res

    def add_app(self, spec: ResourceSpec) -> AppResource:
        """Create a Container App now (replacing a deleted one of the same id)."""
        key = spec.resource_id.lower()
        old = self.resources.get(key)
        if old is not None and old.exists(self.now()):
            raise ValueError(f"{spec.resource_id} already exists")
        res = self._add_app(spec, [])
        res.created = self.now()
        if self._by_name.get(spec.name.lower()) is old:
            self._by_name[spec.name.lower()] = res
        return res

    def delete_app(self, resource_id: str) -> AppResource | None:
        """Delete a Container App now; None if there is none at that id."""
        res = self.find(resource_id)
        if res is not None:
            res.deleted = self.now()
        return res

    # -- lookups ---------------------------------------------------------------------------

    def find(self, resource_id: str) -> AppResource | None:
        """The Container App at ``resource_id`` if it exists now."""
        res = self.resources.get(resource_id.rstrip("/").lower())
        return res if res is not None and res.exists(self.now()) else None

    def find_by_name(self, name: str) -> AppResource | None:
        """The (first declared) Container App called ``name``, if it exists now."""
        res = self._by_name.get(name.lower())
        return res if res is not None and res.exists(self.now()) else None

    def group_location(self, subscription: str, group: str) -> str | None:
        """A resource group's location; None unless it holds (or held) an emulated resource."""
        return self._groups.get(f"/subscriptions/{subscription}/resourcegroups/{group}".lower())

    def find_metered(self, resource_id: str) -> Metered | None:
        """Whatever resource the metrics APIs are asked about, if it exists now."""
        res = self._metered.get(resource_id.rstrip("/").lower())
        if isinstance(res, AppResource) and not res.exists(self.now()):
            return None
        return res

    @property
    def metered(self) -> Mapping[str, Metered]:
        """Every resource with metrics, by lower-case metrics id (existing or not)."""
        return self._metered

    def subscriptions(self) -> list[str]:
        """Every subscription (lower-case) that holds an emulated resource."""
        return list(self._by_subscription)

    def in_subscriptions(self, subscriptions: Iterable[str]) -> Iterator[Any]:
        """The resources (apps, caches, Cosmos DB accounts) of these subscriptions, existing
        or not: the cost is theirs, not the whole estate's."""
        for sub in dict.fromkeys(s.lower() for s in subscriptions):
            yield from self._by_subscription.get(sub, {}).values()

    def find_app(self, sub: str, rg: str, app: str) -> AppResource | None:
        return self.find(
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}"
        )

    # -- writes ----------------------------------------------------------------------------

    def begin_patch(self, res: AppResource, patch: dict[str, Any]) -> Operation:
        """Validate ``patch`` against the current body (raises PatchError) and queue it."""
        merged = merge_patch(app_json(res, self.now()), patch)
        config_from_json(merged)
        traffic_from_json(merged, res)
        now = self.now()
        fail = self.faults.consume("lro-fail", now) is not None
        op = Operation(
            id=str(uuid.uuid4()),
            resource=res,
            patch=patch,
            location=res.spec.location.replace(" ", "").lower(),
            created=now,
            due=now + self.lro_duration,
            fail=fail,
        )
        self.operations[op.id] = op
        self.in_flight.append(op)
        self.writes += 1
        return op

    @property
    def lro_duration(self) -> timedelta:
        """How long an operation runs unpolled: the polls it takes, at the interval asked
        between them (at least a second each)."""
        return timedelta(seconds=max(self.lro_polls, 1) * max(self.lro_retry_after, 1))

    def land_due(self) -> None:
        """End every operation whose time has come, polled or not: a client that crashed
        after the 202 does not stop Azure from applying the change."""
        now = self.now()
        for op in [op for op in self.in_flight if op.due <= now]:
            self._end(op, op.due)
        for cosmos_op in [op for op in self.cosmos_in_flight if op.due <= now]:
            self.end_cosmos(cosmos_op, cosmos_op.due)
        for cache in self.caches_scaling:
            if cache.pending is not None and cache.due is not None and cache.due <= now:
                cache.land(cache.due)
        self.caches_scaling = [c for c in self.caches_scaling if c.pending is not None]

    def end_cosmos(self, op: CosmosOperation, now: datetime) -> None:
        """End a Cosmos DB operation as of ``now`` (at its due time, or when polled done)."""
        self.cosmos_in_flight.remove(op)
        op.end(now)

    def poll(self, op: Operation) -> Operation:
        """Advance an operation by one status poll, applying it when it completes."""
        op.polls += 1
        if op.status == "InProgress" and op.polls > self.lro_polls:
            self._end(op, self.now())
        return op

    def _end(self, op: Operation, now: datetime) -> None:
        """Apply (or fail) ``op`` as of ``now``."""
        self.in_flight.remove(op)
        op.ended = now
        if op.fail:
            op.status = "Failed"
            op.error = {"code": "InternalError", "message": "The operation failed (injected)."}
            return
        try:
            merged = merge_patch(app_json(op.resource, now), op.patch)
            config, tags = config_from_json(merged)
            traffic = traffic_from_json(merged, op.resource)
        except PatchError as exc:  # another operation got there first; ARM fails the op
            op.status = "Failed"
            op.error = {"code": exc.code, "message": exc.message}
            return
        res = op.resource
        moved = traffic is not None and traffic != res.traffic.current
        new_template = config != res.template
        if new_template:  # revision scope: a new revision, built from the template
            res.revisions.add(res.spec.name, now, config, _suffix(merged))
        if new_template or tags != res.tags or moved:
            res.tags = tags
            if traffic is not None and moved:
                res.traffic.set(now, traffic)
            res.changed(now, "Application")
        op.status = "Succeeded"

    def operator_change(self, res: AppResource, params: dict[str, Any]) -> None:
        """Someone else changes the app (the ``concurrent-write`` fault): a new ETag, and
        a new revision when the scale changed."""
        current = res.template
        config = AppConfig(
            int(params.get("minReplicas", current.min_replicas)),
            max(int(params.get("maxReplicas", current.max_replicas)), current.min_replicas),
            current.containers,
        )
        now = self.now()
        if config != current:
            res.revisions.add(res.spec.name, now, config, None)
        res.changed(now, "User")

    def restart(self, res: AppResource, revision: Revision) -> None:
        """Restart a revision's replicas: what hung or leaked in the app is cleared only
        when that revision is the one serving (restarting an idle one changes nothing)."""
        now = self.now()
        revision.restarts.append(now)
        if revision.name in res.weights_at(now):
            res.model.record_restart(now)
        self.writes += 1

    # -- faults ----------------------------------------------------------------------------

    def set_fault(self, kind: str, duration_s: float | None, params: dict[str, Any]) -> Fault:
        now = self.now()
        end = now + timedelta(seconds=duration_s) if duration_s is not None else None
        fault = Fault(kind, now, end, params)
        self.faults.add(fault)
        return fault

    # -- introspection ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        self.land_due()
        now = self.now()
        last_minute = floor_minute(now) - MINUTE
        resources: dict[str, Any] = {}
        for res in self.resources.values():
            if not res.exists(now):
                continue
            config = res.template
            sample = res.sample(last_minute)
            served = res.requests(last_minute)
            resources[res.resource_id] = {
                "type": res.spec.type,
                "name": res.spec.name,
                "minReplicas": config.min_replicas,
                "maxReplicas": config.max_replicas,
                "replicas": sum(r.config.replicas for r in res.revisions.items if r.active(now)),
                "containers": [
                    {"name": c["name"], "image": c["image"], **c["resources"]}
                    for c in containers_json(config)
                ],
                "latestRevision": res.latest_revision,
                "latestReadyRevision": res.revisions.latest_ready(now).name,
                "revisions": [
                    {
                        "name": r.name,
                        "active": r.active(now),
                        "ready": r.is_ready(now),
                        "minReplicas": r.config.min_replicas,
                        "containers": [
                            {"name": c.name, "image": c.image, "cpu": c.cpu, "memory": c.memory}
                            for c in r.config.containers
                        ],
                    }
                    for r in res.revisions.items
                ],
                "restarts": len(res.model.restarts),
                "cpuPercent": round(sample.cpu_percent, 2),
                "memoryPercent": round(sample.memory_percent, 2),
                "errorRatePercent": round(served.failed / served.requests * 100, 2)
                if served.requests
                else 0.0,
                "p95Ms": round(served.p95_ms, 1),
                "traffic": res.weights_at(now),  # who serves now, latestRevision resolved
                "hung": res.model.hung(now),
            }
        for offer in self.offers.values():
            used = offer.sample(last_minute)
            current = offer.current
            resources[offer.spec.resource_id] = {
                "type": "cosmosThroughput",
                "name": offer.spec.name,
                "throughput": current.manual,
                "autoscaleMaxThroughput": current.autoscale_max,
                "minimumThroughput": offer.minimum,
                "offerReplacePending": offer.pending(now),
                "normalizedRUConsumption": round(used.normalized, 2),
                "throttledPercent": round(used.throttled / used.requests * 100, 2)
                if used.requests
                else 0.0,
            }
        for cache in self.caches.values():
            seen = cache.sample(last_minute)
            resources[cache.resource_id] = {
                "type": "redisCache",
                "name": cache.spec.name,
                "sku": cache.sku.to_json(),
                "provisioningState": cache.provisioning_state,
                "serverLoad": round(seen.server_load, 2),
                "connectedClients": round(seen.connected, 2),
                "errors": seen.errors,
                "usedMemoryPercentage": round(seen.used_memory, 2),
                "reboots": len(cache.reboots),
            }
        return {
            "scenario": self.scenario.name,
            "now": format_datetime(now),
            "writes": self.writes,
            "resources": resources,
            "faults": self.faults.to_json(now),
        }


def _suffix(merged: dict[str, Any]) -> str | None:
    """``properties.template.revisionSuffix``: the new revision's name is the app's name,
    ``--`` and this (generated when absent)."""
    template = merged.get("properties", {}).get("template", {})
    suffix = template.get("revisionSuffix") if isinstance(template, dict) else None
    return suffix if isinstance(suffix, str) and suffix else None
