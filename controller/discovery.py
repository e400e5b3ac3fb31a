"""Which resources a selector policy covers now, asked of Azure Resource Graph.

One query per selector (see :func:`controller.policy.selector.graph_query`), read a page
of up to 1,000 rows at a time with ``$skipToken``, paced by Resource Graph's own quota
headers (``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after``): when the quota
is spent, the next page waits for it to reset, on the controller's clock.

An answer is *believed* only when it is whole and plausible. A failed query, a partial
one (``resultTruncated``, or pages whose distinct rows do not add up to the
``totalRecords`` every page reported — the estate changed between pages, so a row was
read twice or never), an empty answer where the last one found resources, or more
resources than the selector's ``maxTargets`` keeps the last good set running: an empty
answer must never look like "the estate is gone", nor a typo like "act on everything".
A row read twice (pages overlap) counts once.

The last good set is the answer to one question: the policy's target type and selector.
A policy whose selector (or ``maxTargets``) changes starts with none — its first answer is
believed, empty or not, unless it fails. Queries run one refresh at a time, so an older
answer never lands after a newer one. A last good set older than ``stale_after`` (no
answer believed since) still runs, but its targets only observe: :meth:`Discovery.held`
says why their actions wait (a resource untagged to opt out must not be acted on for
hours because Resource Graph could not say so).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import anyio
import structlog
from azure.core.exceptions import AzureError

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.clock import Clock
from controller.model import ResourceState
from controller.policy.loader import LoadedPolicy
from controller.policy.selector import Selector, graph_query

if TYPE_CHECKING:  # the SDK is imported with the Resource Graph client, for selectors only
    from azure.mgmt.resourcegraph.models import QueryRequest

log = structlog.get_logger("remediator.discovery")

PAGE = 1000  # Resource Graph's largest page
STALE_AFTER = timedelta(minutes=30)  # six discovery intervals of 5 minutes
PauseCheck = Callable[[ResourceState], Awaitable[str | None]]  # why acting is held, if it is


@dataclass(frozen=True, slots=True)
class Found:
    """A resource Resource Graph reports for a selector."""

    resource_id: str
    name: str
    location: str
    resource_group: str
    subscription: str

    @property
    def region(self) -> str:
        """Azure Monitor's region name for the batch metrics API (``East US`` → ``eastus``)."""
        return self.location.replace(" ", "").lower()


@dataclass
class Discovered:
    """What one selector's last query gave, and what the controller runs on."""

    believed: tuple[Found, ...] = ()  # the last good set: what the targets are
    at: datetime | None = None  # when it was found
    problem: str | None = None  # why the last query was not believed, until one is
    seconds: float = 0.0  # how long the last query took (wall)
    question: tuple[str, Selector] | None = None  # the target type and selector asked


class DiscoveryRefused(Exception):
    """An answer that is not believed; the last good set stays."""


@dataclass
class Quota:
    """Resource Graph's quota as its last answer reported it."""

    remaining: int | None = None
    resets_after: timedelta = timedelta(0)


class Discovery:
    """Runs selectors' queries and keeps, per policy, the last set it believed."""

    def __init__(
        self,
        clients: AzureClients,
        clock: Clock,
        page: int = PAGE,
        stale_after: timedelta = STALE_AFTER,
    ) -> None:
        self._clients = clients
        self._clock = clock
        self._page = page
        self.stale_after = stale_after
        self.quota = Quota()
        self.sets: dict[str, Discovered] = {}  # by policy name
        # one refresh at a time: a reload's and the interval's never interleave, so the
        # one that started last (the newest policies) is the one that writes last
        self._lock = anyio.Lock()
        self._asked: dict[str, tuple[str, Selector]] = {}  # the newest question per policy

    async def refresh_all(self, loaded: Sequence[LoadedPolicy]) -> dict[str, Discovered]:
        """Ask again for every selector policy of ``loaded``; what each now holds. A policy
        asked again differently while this waited (a reload) is left to that refresh."""
        asked: dict[str, tuple[str, Selector]] = {}
        for item in loaded:
            selector = item.policy.target.selector
            if selector is not None:
                asked[item.policy.name] = (item.policy.target.type, selector)
        self._asked = asked
        out: dict[str, Discovered] = {}
        async with self._lock:
            if self._asked is asked:  # a policy without a selector now has no last good set
                for gone in self.sets.keys() - asked.keys():
                    del self.sets[gone]
            for policy, question in asked.items():
                if self._asked.get(policy) == question:  # not superseded while waiting
                    out[policy] = await self.refresh(policy, *question)
        return out

    def found(self) -> dict[str, tuple[Found, ...]]:
        """What each selector policy runs on: its last good set, if it answers the newest
        question asked for it (never an older selector's, while a newer one is asked)."""
        return {
            policy: known.believed
            for policy, known in self.sets.items()
            if self._asked.get(policy, known.question) == known.question
        }

    def held(self, policy: str) -> str | None:
        """Why the targets of ``policy`` may not act now: its last good set is older than
        ``stale_after`` (None while it is fresher, or for a policy no selector names)."""
        known = self.sets.get(policy)
        if known is None or known.at is None:
            return None
        age = (self._clock.now() - known.at).total_seconds()
        if age <= self.stale_after.total_seconds():
            return None
        return (
            f"discovery stale: no answer for policy '{policy}' believed for {_ago(age)} "
            f"(discoveryStaleAfter {_ago(self.stale_after.total_seconds())}): its targets "
            "observe, their actions wait for one"
        )

    def holding(self, policy: str, then: PauseCheck) -> PauseCheck:
        """``then`` (the kill switch), preceded by :meth:`held` for a selector's target."""

        async def check(state: ResourceState) -> str | None:
            return self.held(policy) or await then(state)

        return check

    async def refresh(self, policy: str, resource_type: str, selector: Selector) -> Discovered:
        """Query again; believe the answer or keep the last good set (with ``problem``).
        A changed question (type or selector) lets the last good set go first."""
        known = self._for(policy, (resource_type, selector))
        started = time.perf_counter()
        try:
            found, _ = await self.query(resource_type, selector)
            self._judge(found, known, selector)
        except (AzureError, OSError, ValueError, KeyError, TypeError) as exc:
            known.problem = f"discovery failed: {retry.describe(exc)}; {self._keeping(known)}"
            log.warning("discovery failed", policy=policy, error=known.problem)
            return known
        except DiscoveryRefused as refused:
            known.problem = f"{refused}; {self._keeping(known)}"
            log.warning("discovery not believed", policy=policy, reason=known.problem)
            return known
        finally:
            known.seconds = time.perf_counter() - started
        known.believed, known.at, known.problem = tuple(found), self._clock.now(), None
        return known

    def _for(self, policy: str, question: tuple[str, Selector]) -> Discovered:
        """The policy's record, new when its question changed: an answer to another
        selector is no last good set for this one."""
        known = self.sets.get(policy)
        if known is None or known.question != question:
            if known is not None and known.believed:
                log.info(
                    "selector changed: its last good set is let go",
                    policy=policy,
                    resources=len(known.believed),
                )
            known = self.sets[policy] = Discovered(question=question)
        return known

    def _keeping(self, known: Discovered) -> str:
        """What runs instead of the answer, and how old it is (an operator's first question)."""
        if known.at is None:
            return "no last good set: no targets until an answer is believed"
        age = max((self._clock.now() - known.at).total_seconds(), 0.0)
        return f"keeping the last good set ({len(known.believed)}, believed {_ago(age)} ago)"

    @staticmethod
    def _judge(found: list[Found], known: Discovered, selector: Selector) -> None:
        if not found and known.believed:
            raise DiscoveryRefused(
                f"Resource Graph found nothing where it found {len(known.believed)} before"
            )
        if len(found) > selector.max_targets:
            raise DiscoveryRefused(
                f"Resource Graph found {len(found)} resources, more than maxTargets "
                f"({selector.max_targets}): a selector that broad is taken as a mistake"
            )

    async def query(self, resource_type: str, selector: Selector) -> tuple[list[Found], int]:
        """Every row of the selector's query, page by page; and the number of pages."""
        client = await self._clients.resource_graph()
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        text = graph_query(resource_type, selector)
        found: dict[str, Found] = {}  # by lower-case id: overlapping pages count a row once
        totals: set[int | None] = set()
        token: str | None = None
        pages = 0
        while True:
            await self._pace()
            request = QueryRequest(
                subscriptions=list(selector.subscriptions),
                query=text,
                options=QueryRequestOptions(
                    top=self._page, skip_token=token, result_format="objectArray"
                ),
            )

            async def page(request: QueryRequest = request) -> tuple[Any, Mapping[str, str]]:
                # ``cls`` changes what resources() returns; the SDK's stubs cannot say so
                answer = await client.resources(request, cls=_with_headers)
                return cast(tuple[Any, Mapping[str, str]], answer)

            body, headers = await retry.call(self._clock, page)
            pages += 1
            self._note_quota(headers)
            if str(body.result_truncated).lower() == "true":
                raise DiscoveryRefused(
                    f"Resource Graph truncated its answer (resultTruncated, page {pages}): "
                    "part of the estate is missing from it"
                )
            totals.add(body.total_records)
            for row in body.data or []:
                resource = _row(row)
                if found.setdefault(resource.resource_id.lower(), resource) is not resource:
                    log.debug("row read twice", resource=resource.resource_id, page=pages)
            token = body.skip_token
            if not token:
                _whole(len(found), totals, pages)
                return list(found.values()), pages

    async def _pace(self) -> None:
        """Wait out a spent quota before asking again."""
        if self.quota.remaining is not None and self.quota.remaining <= 0:
            await self._clock.sleep(self.quota.resets_after.total_seconds())
            self.quota.remaining = None

    def _note_quota(self, headers: Mapping[str, str]) -> None:
        remaining = headers.get("x-ms-user-quota-remaining")
        if remaining is not None and str(remaining).isdigit():
            self.quota.remaining = int(remaining)
        resets = retry.hh_mm_ss(headers.get("x-ms-user-quota-resets-after"))
        self.quota.resets_after = timedelta(seconds=resets or 0.0)


def _whole(distinct: int, totals: set[int | None], pages: int) -> None:
    """Refuse an answer whose pages do not add up: every page reports the same
    ``totalRecords`` and the distinct rows read are that many, or the estate changed
    between pages (a resource created or deleted shifts the rows after it)."""
    if totals == {distinct}:
        return
    reported = ", ".join(str(t) for t in sorted(totals, key=lambda t: -1 if t is None else t))
    raise DiscoveryRefused(
        f"Resource Graph's {pages} page(s) do not add up: {distinct} distinct resources read, "
        f"totalRecords {reported} (the estate changed between pages: a row read twice or "
        "never)"
    )


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _with_headers(response: Any, body: Any, _: Any) -> tuple[Any, Mapping[str, str]]:
    return body, response.http_response.headers


def _row(row: Mapping[str, Any]) -> Found:
    return Found(
        resource_id=str(row["id"]),
        name=str(row["name"]),
        location=str(row.get("location") or ""),
        resource_group=str(row.get("resourceGroup") or ""),
        subscription=str(row.get("subscriptionId") or ""),
    )
