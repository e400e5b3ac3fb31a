"""From policies to targets: one per resource, and a resource two policies claim refused."""

from __future__ import annotations

from typing import Any

from controller.discovery import Found
from controller.policy.loader import LoadedPolicy
from controller.targets import expand, name_of
from tests.conftest import make_policy

SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.App/containerApps"


def selector_policy(policy_name: str, **selector: Any) -> LoadedPolicy:
    policy = make_policy(
        metadata={"name": policy_name},
        target={"type": "containerApp", "selector": {"subscriptions": [SUB], **selector}},
    )
    return LoadedPolicy(policy, f"{policy_name}.yaml", 3)


def named_policy(name: str, app: str) -> LoadedPolicy:
    policy = make_policy(
        metadata={"name": name}, target={"type": "containerApp", "resourceId": f"{RG}/{app}"}
    )
    return LoadedPolicy(policy, f"{name}.yaml", 1)


def found(app: str, location: str = "eastus") -> Found:
    return Found(f"{RG}/{app}", app, location, "rg", SUB)


def test_each_resource_found_is_a_target_of_its_own() -> None:
    api = selector_policy("api", tags={"remediator/policy": "api"})
    expanded = expand([api], {"api": [found("a"), found("b", "West Europe")]})
    assert [t.policy.target.resource_id for t in expanded.targets] == [f"{RG}/a", f"{RG}/b"]
    assert [t.policy.target.region for t in expanded.targets] == ["eastus", "westeurope"]
    assert all(t.policy.name == "api" and t.selected for t in expanded.targets)
    assert [name_of(t) for t in expanded.targets] == [f"api|{RG.lower()}/a", f"api|{RG.lower()}/b"]
    assert expanded.per_policy == {"api": 2} and expanded.refused == {}
    # what never differs between a selector's targets is held once, whatever their number
    for target in expanded.targets:
        assert target.policy.model_fields_set is api.policy.model_fields_set
        assert target.policy.escalate_only is api.policy.escalate_only
        assert target.policy.objectives is api.policy.objectives


def test_a_resource_two_policies_claim_is_refused_for_both() -> None:
    """Two selectors, or a selector and a policy naming the app: never acted on twice."""
    api = selector_policy("api", tags={"remediator/policy": "api"})
    web = selector_policy("web", name="a*")
    pinned = named_policy("pinned", "c")
    expanded = expand(
        [api, web, pinned],
        {"api": [found("a"), found("b"), found("c")], "web": [found("a")]},
    )
    assert [t.policy.target.resource_id for t in expanded.targets] == [f"{RG}/b"]
    assert set(expanded.refused) == {f"{RG}/a".lower(), f"{RG}/c".lower()}
    why = expanded.refused[f"{RG}/a".lower()]
    assert "'api'" in why and "'web'" in why and "refused for all of them" in why
    assert "'pinned'" in expanded.refused[f"{RG}/c".lower()]
    assert expanded.per_policy == {"api": 1, "web": 0, "pinned": 0}


def test_a_policy_naming_one_resource_keeps_its_name() -> None:
    pinned = named_policy("pinned", "c")
    [target] = expand([pinned], {}).targets
    assert target is pinned and name_of(target) == "pinned"


def test_a_target_found_again_keeps_its_policy_object_until_it_changes() -> None:
    """A discovery re-finds the estate every interval: a target it finds again unchanged
    keeps the policy it runs (no copy per target per discovery); a moved resource, or a
    changed policy, gets a new one."""
    api = selector_policy("api", tags={"remediator/policy": "api"})
    first = expand([api], {"api": [found("a"), found("b")]})
    running = {name_of(t): t.policy for t in first.targets}
    again = expand([api], {"api": [found("a"), found("b", "westeurope")]}, running)
    a, b = again.targets
    assert a.policy is first.targets[0].policy  # found again, as it was
    assert b.policy is not first.targets[1].policy and b.policy.target.region == "westeurope"
    reloaded = make_policy(  # the same selector, its rules changed by a reload
        metadata={"name": "api"},
        interval="2m",
        target={"type": "containerApp", "selector": {"subscriptions": [SUB], "tags": {"a": "b"}}},
    )
    [c] = expand([LoadedPolicy(reloaded, "api.yaml", 3)], {"api": [found("a")]}, running).targets
    assert c.policy is not first.targets[0].policy and c.policy.target.resource_id == f"{RG}/a"
    assert c.policy.interval != first.targets[0].policy.interval
