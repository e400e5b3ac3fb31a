"""Selectors: what they accept, and the one Resource Graph query each becomes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.policy.selector import Selector, graph_query

SUB = "00000000-0000-0000-0000-000000000001"


def selector(**fields: Any) -> Selector:
    return Selector.model_validate({"subscriptions": [SUB], **fields})


def test_a_selector_becomes_one_query_in_a_fixed_order() -> None:
    query = graph_query(
        "containerApp",
        selector(
            resourceGroups=["rg-a", "rg-b"],
            tags={
                "team": ["payments", "search"],
                "remediator/policy": "api",
                "owner": {"exists": True},
            },
            name="app-*",
            query="location =~ 'eastus'",
        ),
    )
    assert query.splitlines() == [
        "Resources",
        "| where type =~ 'microsoft.app/containerapps'",
        "| where resourceGroup in~ ('rg-a', 'rg-b')",
        "| where isnotempty(tags['owner'])",
        "| where tags['remediator/policy'] =~ 'api'",
        "| where tags['team'] in~ ('payments', 'search')",
        "| where name matches regex '(?i)^app\\\\-.*$'",
        "| where (location =~ 'eastus')",
        "| project id, name, type, location, resourceGroup, subscriptionId, tags",
        "| order by id asc",
    ]


def test_quotes_in_values_cannot_end_the_literal() -> None:
    query = graph_query("redisCache", selector(tags={"owner": "o'brien"}))
    assert "| where tags['owner'] =~ 'o\\'brien'" in query
    assert "microsoft.cache/redis" in query


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "must narrow the set"),  # the whole subscription, by accident
        ({"subscriptions": [], "name": "a"}, "at least 1 item"),
        ({"subscriptions": ["*"], "name": "a"}, "should match pattern"),
        ({"name": "app-*; drop"}, "should match pattern"),
        ({"query": "name =~ 'a' | project id"}, "without '|'"),
        ({"tags": {"team": {"exists": False}}}, "exists: false"),
        ({"tags": {"team": ""}}, "at least 1 character"),
        ({"name": "a", "maxTargets": 0}, "greater than or equal to 1"),
        ({"name": "a", "region": "eastus"}, "Extra inputs are not permitted"),
    ],
)
def test_what_a_selector_refuses(fields: dict[str, Any], message: str) -> None:
    data = {"subscriptions": [SUB], **fields}
    with pytest.raises(ValidationError, match=message):
        Selector.model_validate(data)


def test_a_pipe_inside_a_string_is_only_text() -> None:
    assert selector(query="name =~ 'a|b'").query == "name =~ 'a|b'"
