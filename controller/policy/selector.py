"""A policy target that names many resources: a selector, answered by Azure Resource Graph.

A selector says which resources of one type a policy covers: subscriptions (required: a
selector never reaches past the scopes it names), and any of resource groups, tags (a
value, one of several values, or the key's mere presence), a name pattern and a raw
Resource Graph ``where`` expression for what those cannot say. At least one of those
narrows the set: "every app in the subscription" must be said on purpose
(``resourceGroups`` or a tag), never by leaving a selector empty.

:func:`graph_query` turns a selector into the one query shape the controller sends, so
what it asks for can be read in the audit and reproduced in the portal.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from controller.policy.base import Strict

# Resource Graph's type column (lower-case) for each target type a selector may find
GRAPH_TYPES = {
    "containerApp": "microsoft.app/containerapps",
    "redisCache": "microsoft.cache/redis",
}
COLUMNS = ("id", "name", "type", "location", "resourceGroup", "subscriptionId", "tags")
_SUBSCRIPTION = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_NAME_PATTERN = r"^[A-Za-z0-9*?\-_.\[\]]{1,260}$"


class Exists(Strict):
    """``{exists: true}``: the tag is set, whatever its value."""

    exists: bool

    @field_validator("exists")
    @classmethod
    def _only_true(cls, value: bool) -> bool:
        if not value:
            raise ValueError("exists: false is not a selector; leave the tag out instead")
        return value


TagValue = Annotated[str, Field(min_length=1, max_length=256)]
TagMatch = TagValue | list[TagValue] | Exists


class Selector(Strict):
    """Which resources of the target's type a policy covers."""

    subscriptions: list[Annotated[str, Field(pattern=_SUBSCRIPTION)]] = Field(min_length=1)
    resource_groups: list[Annotated[str, Field(min_length=1, max_length=90)]] = Field(
        default_factory=list
    )
    tags: dict[Annotated[str, Field(min_length=1, max_length=512)], TagMatch] = Field(
        default_factory=dict
    )
    name: str | None = Field(default=None, pattern=_NAME_PATTERN)  # a glob: app-*, api-??
    query: str | None = Field(default=None, min_length=1, max_length=2000)
    # more matches than this is taken as a mistake: the set is not believed
    max_targets: int = Field(default=1000, ge=1, le=10_000)

    @field_validator("query")
    @classmethod
    def _one_expression(cls, value: str | None) -> str | None:
        if value is not None and "|" in _outside_strings(value):
            raise ValueError(
                "query is one Resource Graph where-expression (e.g. "
                "\"properties.configuration.activeRevisionsMode =~ 'Multiple'\"), without '|'"
            )
        return value

    @model_validator(mode="after")
    def _narrows(self) -> Selector:
        if not (self.resource_groups or self.tags or self.name or self.query):
            raise ValueError(
                "a selector must narrow the set: give resourceGroups, tags, name or query "
                "(a whole subscription is said with its resource groups or a tag)"
            )
        return self


def graph_query(resource_type: str, selector: Selector) -> str:
    """The Resource Graph query for ``selector`` (its subscriptions go in the request's
    scope, not the query)."""
    lines = ["Resources", f"| where type =~ {_quote(GRAPH_TYPES[resource_type])}"]
    if selector.resource_groups:
        lines.append(f"| where resourceGroup in~ ({_list(selector.resource_groups)})")
    for key, match in sorted(selector.tags.items()):
        column = f"tags[{_quote(key)}]"
        if isinstance(match, Exists):
            lines.append(f"| where isnotempty({column})")
        elif isinstance(match, list):
            lines.append(f"| where {column} in~ ({_list(match)})")
        else:
            lines.append(f"| where {column} =~ {_quote(match)}")
    if selector.name:
        lines.append(f"| where name matches regex {_quote(_regex(selector.name))}")
    if selector.query:
        lines.append(f"| where ({selector.query})")
    lines.append(f"| project {', '.join(COLUMNS)}")
    lines.append("| order by id asc")
    return "\n".join(lines)


def _regex(glob: str) -> str:
    """A name glob (``*``, ``?``, ``[…]``) as an anchored, case-insensitive RE2 regex (Azure
    names are case-insensitive)."""
    parts = re.split(r"(\*|\?|\[[^\]]*\])", glob)
    body = "".join(
        ".*"
        if part == "*"
        else "."
        if part == "?"
        else part
        if part.startswith("[")
        else re.escape(part)
        for part in parts
        if part
    )
    return f"(?i)^{body}$"


def _quote(text: str) -> str:
    """A Kusto string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(values: list[str]) -> str:
    return ", ".join(_quote(v) for v in values)


def _outside_strings(text: str) -> str:
    """``text`` without its quoted parts (a '|' inside a string literal is fine)."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "", text)


def describe(selector: Selector) -> dict[str, Any]:
    """The selector as its policy file says it (for plan, status and the audit)."""
    return selector.model_dump(by_alias=True, exclude_defaults=True, mode="json")
