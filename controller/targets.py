"""From policies to targets: one concrete policy per resource the loop reconciles.

A policy that names one resource is its own target. A selector policy becomes one
target per resource Resource Graph found for it — the same rules and guards, the
resource's id, and its region from the graph (so its metrics batch) — each with its
own memory, cooldowns, budgets, breakers and audit lines (the policy's name and the
resource id). A resource two policies claim (two selectors, or a selector and a policy
naming it) is refused for both and named: it would otherwise be acted on twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.discovery import Found
from controller.memory import target_key
from controller.policy.loader import LoadedPolicy
from controller.policy.schema import Policy, Target

_REGION = re.compile(r"^[a-z][a-z0-9]{2,40}$")


@dataclass(frozen=True)
class Expanded:
    """The targets to run, and what was refused."""

    targets: tuple[LoadedPolicy, ...]
    # resource id (lower-case) → why it runs for no policy
    refused: Mapping[str, str] = field(default_factory=dict)
    per_policy: Mapping[str, int] = field(default_factory=dict)  # targets by policy name


def name_of(item: LoadedPolicy) -> str:
    """The loop's name for a target: a policy naming one resource keeps its own name."""
    policy = item.policy
    return target_key(policy.name, policy.target.resource_id) if item.selected else policy.name


def expand(
    loaded: Sequence[LoadedPolicy],
    found: Mapping[str, Sequence[Found]],
    running: Mapping[str, Policy] | None = None,
) -> Expanded:
    """Every target of ``loaded``, with ``found`` giving each selector policy's resources.
    A target in ``running`` (the loop's name → its policy) that its selector finds again,
    unchanged, keeps its policy object: a discovery of 10,000 resources makes no copy
    of the ones it already runs."""
    claims: dict[str, list[tuple[LoadedPolicy, Found | None]]] = {}
    for item in loaded:
        target = item.policy.target
        if target.selector is None:
            claims.setdefault(target.resource_id.lower(), []).append((item, None))
            continue
        for resource in found.get(item.policy.name, ()):
            claims.setdefault(resource.resource_id.lower(), []).append((item, resource))
    targets: list[LoadedPolicy] = []
    refused: dict[str, str] = {}
    per_policy = {item.policy.name: 0 for item in loaded}
    for resource_id, owners in sorted(claims.items()):
        if len(owners) > 1:
            names = ", ".join(sorted(f"'{item.policy.name}'" for item, _ in owners))
            refused[resource_id] = (
                f"{resource_id} is claimed by policies {names}: refused for all of them "
                "(one policy per resource, or it would be acted on twice)"
            )
            continue
        item, found_one = owners[0]
        targets.append(item if found_one is None else _concrete(item, found_one, running or {}))
        per_policy[item.policy.name] += 1
    return Expanded(tuple(targets), refused, per_policy)


def _concrete(item: LoadedPolicy, resource: Found, running: Mapping[str, Policy]) -> LoadedPolicy:
    """The selector policy, aimed at one resource it found."""
    policy = item.policy
    region = resource.region if _REGION.match(resource.region) else None
    before = running.get(target_key(policy.name, resource.resource_id))
    if before is not None and _aimed_from(before, policy, resource.resource_id, region):
        return LoadedPolicy(before, item.source, item.line, selected=True)
    target = Target(type=policy.target.type, resource_id=resource.resource_id, region=region)
    _ = policy.escalate_only  # cached on the template first: every copy shares it
    concrete = policy.model_copy(update={"target": target})
    # policies are frozen: a copy's set of given fields never changes, so it shares the
    # template's instead of holding its own (~0.7 KiB a target at 10,000 targets)
    object.__setattr__(concrete, "__pydantic_fields_set__", policy.model_fields_set)
    return LoadedPolicy(concrete, item.source, item.line, selected=True)


def _aimed_from(concrete: Policy, template: Policy, resource_id: str, region: str | None) -> bool:
    """Whether ``concrete`` is ``template`` aimed at ``resource_id`` in ``region``: every
    field but the target the template's own (shared by reference since the copy, so
    mostly an identity check), the target that resource."""
    target = concrete.target
    if (
        target.resource_id != resource_id
        or target.region != region
        or target.type != template.target.type
    ):
        return False
    for name in type(template).model_fields:
        if name == "target":
            continue
        mine, theirs = getattr(concrete, name), getattr(template, name)
        if mine is not theirs and mine != theirs:
            return False
    return True
