"""Readiness: can this replica do its job right now, and if not, why not.

``/healthz`` says the loop is alive; ``/readyz`` says it can act: policies loaded, the
credential still yields a token, the audit log is writable, and the replica's role
(leader, standby, single) is known. A failing credential makes every Azure call fail
with nothing to act on, so the platform should see it before an incident does.

The token check is cached (``recheck``) so that probes every few seconds do not turn
into token requests every few seconds; the SDK's own credential caches tokens too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError

from controller.clock import Clock
from controller.core.breaker import BreakerState
from controller.lease import LeaderElector
from controller.loop import Loop
from controller.shards import PartitionOwner


class Writable(Protocol):
    def problem(self) -> str | None:
        """Why the audit cannot be written now, or None."""
        ...


@dataclass
class Readiness:
    """The checks behind ``/readyz``."""

    clock: Clock
    loop: Loop
    credential: AsyncTokenCredential
    scope: str
    audit: Writable | None = None
    elector: LeaderElector | None = None
    owner: PartitionOwner | None = None  # shards: the partitions this replica acts for
    # shards: the partitions owned whose log is not open yet, and why: waiting for another
    # writer to let go (ready all the same), or refused until an operator acts (not ready)
    waiting: Callable[[], Mapping[int, str]] | None = None
    refused: Callable[[], Mapping[int, str]] | None = None
    # shards: the policies loaded, which a replica running no target yet (owning none, or
    # waiting for a partition's log) still has: it is ready, and says what it waits for
    policies_loaded: Callable[[], int] | None = None
    # shards: why this replica's share of the budgets never affords an action, or None
    starved: Callable[[], str | None] | None = None
    policy_error: str | None = None  # why the last policy reload was rejected, if it was
    # selector policies whose newest discovery was not believed: why (the last good set runs)
    discovery: dict[str, str] = field(default_factory=dict)
    recheck: timedelta = timedelta(seconds=30)
    token_timeout: float = 10.0
    _token_checked: datetime | None = field(default=None, init=False)
    _token_problem: str | None = field(default=None, init=False)

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """Whether this replica is ready, with one entry per check and the open breakers."""
        token = await self._token()
        audit = self.audit.problem() if self.audit is not None else None
        policies = len(self.loop.reconcilers)
        loaded = self.policies_loaded() if self.policies_loaded is not None else policies
        checks: dict[str, dict[str, Any]] = {
            "policies": _entry(
                self.policy_error or (None if loaded else "no policies loaded"),
                loaded=policies,
            ),
            "credential": _entry(token),
            "audit": _entry(audit),
            "role": _entry(None, role=self._role()),
        }
        if self.owner is not None:
            checks["shards"] = self._shards(self.owner)
        ready = all(c["ok"] for c in checks.values())
        # a discovery not believed is news, not unreadiness: the last good set still runs
        checks["discovery"] = {"ok": not self.discovery, "stale": dict(self.discovery)}
        return ready, {
            "status": "ready" if ready else "not-ready",
            "checks": checks,
            "openBreakers": self.open_breakers(),
        }

    def _shards(self, owner: PartitionOwner) -> dict[str, Any]:
        """Owning none, or waiting for another writer to let go of a partition's log (or of
        the log it imports), is news, not unreadiness: an old owner or an old revision lets
        go once this one is ready. A partition refused is unreadiness: its targets go
        unmanaged until an operator acts, and a rollout must not carry on over it."""
        waiting = dict(self.waiting() if self.waiting else {})
        refused = dict(self.refused() if self.refused else {})
        # so is a share of the budgets that never affords an action
        problem = self.starved() if self.starved is not None else None
        if refused:
            named = ", ".join(str(p) for p in sorted(refused))
            problem = f"partition(s) {named} refused: their targets do not run until it is mended"
        return _entry(
            problem,
            identity=owner.identity,
            partitions=owner.partitions,
            owned=owner.owned(),
            # why a partition owned runs none of its targets yet
            waiting={str(p): why for p, why in sorted(waiting.items())},
            refused={str(p): why for p, why in sorted(refused.items())},
        )

    def _role(self) -> str:
        if self.elector is not None:
            return self.elector.status()
        return "shard" if self.owner is not None else "single"

    def open_breakers(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        found = []
        for reconciler in self.loop.reconcilers:
            open_for = reconciler.policy.guards.breaker.open_for
            for action, breaker in sorted(reconciler.memory.breakers.items()):
                state = breaker.state(now, open_for)
                if state is not BreakerState.CLOSED:
                    found.append(
                        {"policy": reconciler.policy.name, "action": action, "state": state.value}
                    )
        return found

    async def _token(self) -> str | None:
        now = self.clock.now()
        if self._token_checked is not None and now - self._token_checked < self.recheck:
            return self._token_problem
        try:
            with anyio.fail_after(self.token_timeout):
                await self.credential.get_token(self.scope)
            self._token_problem = None
        except (AzureError, TimeoutError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._token_problem = f"no token for {self.scope}: {first[:300]}"
        self._token_checked = now
        return self._token_problem


def _entry(problem: str | None, **detail: Any) -> dict[str, Any]:
    return {"ok": problem is None, **({"problem": problem} if problem else {}), **detail}
