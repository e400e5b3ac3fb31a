"""Cosmos DB (SQL API) throughput: the scenario spec, the workload model and its JSON.

A throughput offer lives on a database or a container. Demand is in RU/s; what the
offer provisions serves it, and the rest is answered 429:

* manual: ``throughput`` RU/s, exactly;
* autoscale: anything from 10 % of ``maxThroughput`` up to it, instantly.

``NormalizedRUConsumption`` is demand over what is provisioned (capped at 100 %), the
429 share is the demand provisioning cannot serve. A raise above
``instantMaximumThroughput`` is a partition split: it is pending
(``offerReplacePending``) for ``splitMinutes`` and raises the minimum for good.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .history import History
from .metered import Aggregates, MetricDef, constant

if TYPE_CHECKING:
    from .scenario import _Checker, _Map

NAMESPACE = "Microsoft.DocumentDB/databaseAccounts"
CATALOG: dict[str, MetricDef] = {
    m.name.lower(): m
    for m in (
        MetricDef(
            "NormalizedRUConsumption",
            "Percent",
            ("DatabaseName", "CollectionName", "PartitionKeyRangeId", "Region"),
        ),
        MetricDef("TotalRequests", "Count", ("DatabaseName", "CollectionName", "StatusCode")),
        MetricDef("TotalRequestUnits", "Count", ("DatabaseName", "CollectionName", "StatusCode")),
        MetricDef("ProvisionedThroughput", "Count", ("DatabaseName", "CollectionName")),
    )
}
DEMAND_FIELDS = {"ruDemand": "ru_demand"}


@dataclass(frozen=True)
class CosmosSpec:
    """A database- or container-level throughput offer, as at scenario start."""

    name: str  # unique in the scenario (timeline entries name it)
    subscription: str
    resource_group: str
    account: str
    database: str
    container: str | None
    location: str
    throughput: int | None  # manual RU/s
    autoscale_max: int | None  # autoscale maxThroughput
    minimum: int
    instant_maximum: int
    ru_demand: float  # RU/s the workload asks for
    ru_per_request: float = 5.0
    split_minutes: int = 240

    @property
    def account_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.DocumentDB/databaseAccounts/{self.account}"
        )

    @property
    def resource_id(self) -> str:
        db = f"{self.account_id}/sqlDatabases/{self.database}"
        return f"{db}/containers/{self.container}" if self.container else db


@dataclass(frozen=True)
class Offer:
    manual: int | None
    autoscale_max: int | None

    @property
    def capacity(self) -> int:
        """The most RU/s the offer can serve."""
        return self.manual if self.manual is not None else int(self.autoscale_max or 0)


@dataclass(frozen=True)
class CosmosSample:
    provisioned: float  # RU/s provisioned this minute (autoscale follows demand)
    normalized: float  # percent
    requests: float  # requests attempted in the minute
    throttled: float  # of which answered 429
    units: float  # RU consumed in the minute


class CosmosOffer:
    """One throughput offer's history: what was provisioned when, and what was asked."""

    def __init__(self, spec: CosmosSpec, start: datetime, demand: list[tuple[datetime, float]]):
        self.spec = spec
        self.offers: History[Offer] = History(start, Offer(spec.throughput, spec.autoscale_max))
        self.demand: History[float] = History(start, spec.ru_demand)
        for at, value in demand:
            self.demand.set(at, value)
        self.minimum = spec.minimum
        self.instant_maximum = spec.instant_maximum
        self.pending_until: datetime | None = None
        self.pending_offer: Offer | None = None

    @property
    def current(self) -> Offer:
        return self.offers.current

    def settle(self, now: datetime) -> None:
        """Finish a partition split whose time has come."""
        if self.pending_until is not None and now >= self.pending_until:
            assert self.pending_offer is not None
            self.offers.set(self.pending_until, self.pending_offer)
            capacity = self.pending_offer.capacity
            self.minimum = max(self.minimum, math.ceil(capacity / 10 / 100.0) * 100)
            self.instant_maximum = max(self.instant_maximum, capacity)
            self.pending_until = self.pending_offer = None

    def pending(self, now: datetime) -> bool:
        self.settle(now)
        return self.pending_until is not None

    def replace(self, now: datetime, offer: Offer) -> None:
        """Apply a new offer now, or start a split when it is above the instant maximum."""
        if offer.capacity > self.instant_maximum and offer.capacity > self.current.capacity:
            self.pending_until = now + timedelta(minutes=self.spec.split_minutes)
            self.pending_offer = offer
            return
        self.offers.set(now, offer)

    def sample(self, minute: datetime) -> CosmosSample:
        offer = self.offers.at(minute)
        wanted = self.demand.at(minute)
        if offer.manual is not None:
            provisioned = float(offer.manual)
        else:
            top = float(offer.autoscale_max or 0)
            provisioned = min(top, max(top / 10, wanted))
        served = min(wanted, provisioned)
        requests = wanted / self.spec.ru_per_request * 60
        throttled = requests * (wanted - served) / wanted if wanted > 0 else 0.0
        normalized = min(100.0, wanted / provisioned * 100) if provisioned else 100.0
        return CosmosSample(provisioned, normalized, requests, throttled, served * 60)

    def throughput_json(self, now: datetime) -> dict[str, Any]:
        """``throughputSettings/default`` (CosmosDBSql…ThroughputGet.json shape)."""
        pending = self.pending(now)
        offer = self.current
        resource: dict[str, Any] = {
            "minimumThroughput": str(self.minimum),
            "offerReplacePending": "true" if pending else "false",
            "instantMaximumThroughput": str(self.instant_maximum),
            "softAllowedMaximumThroughput": "1000000",
            "_rid": "PD5DALigDgw=",
            "_ts": int(now.timestamp()),
            "_etag": f'"{len(self.offers._times):08x}-0000-0000-0000-56f9a2630000"',
        }
        if offer.manual is not None:
            resource["throughput"] = offer.manual
        else:
            resource["throughput"] = int(self.sample(now).provisioned)
            resource["autoscaleSettings"] = {"maxThroughput": offer.autoscale_max}
        arm_id = self.spec.resource_id.replace("/containers/", "/sqlContainers/")
        kind = "sqlDatabases/sqlContainers" if self.spec.container else "sqlDatabases"
        return {
            "id": f"{arm_id}/throughputSettings/default",
            "name": "default",
            "type": f"Microsoft.DocumentDB/databaseAccounts/{kind}/throughputSettings",
            "location": self.spec.location,
            "tags": {},
            "properties": {"resource": resource},
        }

    def validate(self, body: Any, now: datetime) -> Offer:
        """The offer a PUT asks for, or ValueError with the service's message."""
        props = body.get("properties") if isinstance(body, dict) else None
        resource = props.get("resource") if isinstance(props, dict) else None
        if not isinstance(resource, dict):
            raise ValueError("properties.resource is required.")
        autoscale = resource.get("autoscaleSettings")
        throughput = resource.get("throughput")
        if self.pending(now):
            raise ValueError("An offer replace is pending on this resource; retry when it ends.")
        if autoscale is not None:
            if self.current.manual is not None:
                raise ValueError(
                    "The offer is manual: migrate it to autoscale before setting autoscaleSettings."
                )
            top = autoscale.get("maxThroughput") if isinstance(autoscale, dict) else None
            if not isinstance(top, int) or isinstance(top, bool) or top < 1000 or top % 1000:
                raise ValueError(
                    f"autoscaleSettings.maxThroughput must be a multiple of 1000, at least 1000; "
                    f"got {top!r}."
                )
            if top < self.minimum:
                raise ValueError(
                    f"maxThroughput {top} is below the minimum {self.minimum} for this offer."
                )
            return Offer(None, top)
        if self.current.manual is None:
            raise ValueError(
                "The offer is autoscale: set autoscaleSettings.maxThroughput, or migrate it "
                "to manual throughput first."
            )
        if not isinstance(throughput, int) or isinstance(throughput, bool) or throughput % 100:
            raise ValueError(f"throughput must be a multiple of 100 RU/s; got {throughput!r}.")
        if throughput < self.minimum:
            raise ValueError(
                f"The offered throughput {throughput} is below the minimum {self.minimum} "
                "RU/s for this resource."
            )
        return Offer(throughput, None)

    def migrate(self, now: datetime, to_autoscale: bool) -> None:
        offer = self.current
        if to_autoscale and offer.manual is not None:
            top = max(1000, math.ceil(offer.manual * 10 / 1000.0) * 1000)
            self.offers.set(now, Offer(None, top))
        elif not to_autoscale and offer.autoscale_max is not None:
            self.offers.set(now, Offer(max(self.minimum, offer.autoscale_max // 10), None))


class CosmosAccount:
    """A database account: what the metrics APIs are asked about (``Metered``)."""

    def __init__(self, account_id: str, location: str) -> None:
        self.account_id = account_id
        self._location = location
        self.offers: list[CosmosOffer] = []

    @property
    def metrics_id(self) -> str:
        return self.account_id

    @property
    def namespace(self) -> str:
        return NAMESPACE

    @property
    def location(self) -> str:
        return self._location

    @property
    def catalog(self) -> Mapping[str, MetricDef]:
        return CATALOG

    def minute(self, metric: MetricDef, at: datetime, dimensions: Mapping[str, str]) -> Aggregates:
        chosen = [
            o
            for o in self.offers
            if dimensions.get("databasename", o.spec.database).lower() == o.spec.database.lower()
            and (
                "collectionname" not in dimensions
                or dimensions["collectionname"].lower() == (o.spec.container or "").lower()
            )
        ]
        samples = [o.sample(at) for o in chosen]
        name = metric.name.lower()
        if name == "normalizedruconsumption":
            return constant(max((s.normalized for s in samples), default=0.0))
        if name == "provisionedthroughput":
            return constant(sum(s.provisioned for s in samples), per_item=False)
        status = dimensions.get("statuscode")
        if name == "totalrequests":
            if status == "429":
                count = sum(s.throttled for s in samples)
            elif status is not None:
                count = sum(s.requests - s.throttled for s in samples) if status == "200" else 0.0
            else:
                count = sum(s.requests for s in samples)
            count = round(count)
            return {"average": 1.0 if count else 0.0, "minimum": 1.0, "maximum": 1.0,
                    "total": float(count), "count": float(count)}  # fmt: skip
        units = sum(s.units for s in samples) if status in (None, "200") else 0.0
        return constant(units, per_item=False)

    def dimension_value(self, dimension: str) -> str:
        first = self.offers[0].spec if self.offers else None
        return {
            "databasename": first.database if first else "unknown",
            "collectionname": (first.container or "") if first else "unknown",
            "statuscode": "200",
            "region": first.location if first else "unknown",
            "partitionkeyrangeid": "0",
        }.get(dimension, "unknown")


def parse_spec(check: _Checker, node: _Map, subscription: str) -> CosmosSpec:
    """A ``type: cosmosThroughput`` scenario resource."""
    what = f"resource {node.get('name', '?')}"
    check.keys(
        node,
        what,
        {"type", "name", "resourceGroup", "account", "database", "location", "workload"},
        {
            "container",
            "throughput",
            "autoscaleMaxThroughput",
            "minimumThroughput",
            "instantMaximumThroughput",
            "splitMinutes",
        },
    )
    manual = (
        check.integer(node, "throughput", what, 100, 1_000_000) if "throughput" in node else None
    )
    top = (
        check.integer(node, "autoscaleMaxThroughput", what, 1000, 1_000_000)
        if "autoscaleMaxThroughput" in node
        else None
    )
    if (manual is None) == (top is None):
        raise check.fail(node, f"{what}: give exactly one of throughput, autoscaleMaxThroughput")
    wl = check.mapping(node["workload"], f"{what}: workload", node)
    check.keys(wl, f"{what}: workload", {"ruDemand"}, {"ruPerRequest"})
    default_min = manual if manual is not None and manual < 400 else 400
    if top is not None:
        default_min = top // 10
    spec = CosmosSpec(
        name=check.string(node, "name", what),
        subscription=subscription,
        resource_group=check.string(node, "resourceGroup", what),
        account=check.string(node, "account", what),
        database=check.string(node, "database", what),
        container=check.string(node, "container", what) if "container" in node else None,
        location=check.string(node, "location", what),
        throughput=manual,
        autoscale_max=top,
        minimum=(
            check.integer(node, "minimumThroughput", what, 100, 1_000_000)
            if "minimumThroughput" in node
            else default_min
        ),
        instant_maximum=(
            check.integer(node, "instantMaximumThroughput", what, 400, 10_000_000)
            if "instantMaximumThroughput" in node
            else 10_000
        ),
        ru_demand=check.number(wl, "ruDemand", "workload"),
        split_minutes=(
            check.integer(node, "splitMinutes", what, 1, 10_000) if "splitMinutes" in node else 240
        ),
    )
    if "ruPerRequest" in wl:
        spec = replace(spec, ru_per_request=check.number(wl, "ruPerRequest", "workload", 0.1))
    return spec


@dataclass
class CosmosOperation:
    """An accepted PUT or migrate. As in Azure, it proceeds after the 202 whether or not
    anyone polls: it ends at ``due`` (or sooner, once polled ``lro_polls`` times)."""

    id: str
    offer: CosmosOffer
    change: Offer | str  # the new offer, or "autoscale" / "manual" for a migrate
    location: str
    resource_url: str
    due: datetime
    fail: bool = False  # the ``lro-fail`` fault: it ends Failed and is not applied
    polls: int = 0
    status: str = "InProgress"
    error: dict[str, str] | None = None

    def end(self, now: datetime) -> None:
        """Apply (or fail) the change as of ``now``."""
        if self.fail:
            self.status = "Failed"
            self.error = {
                "code": "InternalServerError",
                "message": "The operation failed (injected).",
            }
        elif isinstance(self.change, Offer):
            self.offer.replace(now, self.change)
            self.status = "Succeeded"
        else:
            self.offer.migrate(now, to_autoscale=self.change == "autoscale")
            self.status = "Succeeded"
