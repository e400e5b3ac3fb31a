"""Plug-in points, kopf-style: signal sources and actions registered by name.

A :class:`Registry` is an object built for each run (and fresh in each test), never a
module-level global. Decorators only record; the loop looks things up by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from controller.model import Observation, Outcome, Proposal, ResourceState
from controller.policy.schema import Objective, Policy, Target


class SignalSource(Protocol):
    """Where observations come from (``azureMonitor`` …)."""

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Learn of a target before the first pass, so reads can be batched."""
        ...

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Forget a target that is gone, so later reads leave it out."""
        ...

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        """One observation per objective name; failures come back as quality, not raised."""
        ...


ReadState = Callable[[Target], Awaitable[ResourceState]]
ApplyAction = Callable[[Target, Proposal], Awaitable[Outcome]]


class UnknownPlugin(LookupError):
    """A policy names a signal type, resource type or action nobody registered."""


@dataclass
class Registry:
    signals: dict[str, SignalSource] = field(default_factory=dict)
    readers: dict[str, ReadState] = field(default_factory=dict)
    actions: dict[tuple[str, str], ApplyAction] = field(default_factory=dict)

    def add_signal(self, name: str, source: SignalSource) -> None:
        self.signals[name] = source

    def reader(self, resource_type: str) -> Callable[[ReadState], ReadState]:
        def record(fn: ReadState) -> ReadState:
            self.readers[resource_type] = fn
            return fn

        return record

    def action(self, resource_type: str, name: str) -> Callable[[ApplyAction], ApplyAction]:
        def record(fn: ApplyAction) -> ApplyAction:
            self.actions[(resource_type, name)] = fn
            return fn

        return record

    def missing(self, policy: Policy) -> list[str]:
        """What ``policy`` needs that nobody registered (checked before the loop starts)."""
        kind = policy.target.type
        needs: list[tuple[str, str, bool]] = [
            ("signal source", o.signal.type, o.signal.type in self.signals)
            for o in policy.objectives
        ]
        needs.append(("resource reader", kind, kind in self.readers))
        actions = [s.action for s in policy.remediation] + list(policy.step_back_actions)
        needs += [("action", f"{kind}/{a}", (kind, a) in self.actions) for a in actions]
        return [f"policy {policy.name}: no {what} {name!r}" for what, name, ok in needs if not ok]

    def signal(self, name: str) -> SignalSource:
        try:
            return self.signals[name]
        except KeyError:
            raise UnknownPlugin(f"no signal source named {name!r}") from None

    def read_state(self, resource_type: str) -> ReadState:
        try:
            return self.readers[resource_type]
        except KeyError:
            raise UnknownPlugin(f"no reader for resource type {resource_type!r}") from None

    def apply(self, resource_type: str, name: str) -> ApplyAction:
        try:
            return self.actions[(resource_type, name)]
        except KeyError:
            raise UnknownPlugin(f"no action {name!r} for {resource_type!r}") from None
