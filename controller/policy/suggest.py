""" "Did you mean …?" for a misspelt policy key: the keys the language allows at that
place (read from its JSON Schema, so they cannot drift) closest to what was written."""

from __future__ import annotations

from difflib import get_close_matches
from functools import cache
from typing import Any

from controller.policy.json_schema import policy_json_schema

PathKey = tuple[str | int, ...]


def did_you_mean(loc: PathKey) -> str:
    """`` (did you mean 'threshold'?)`` for an unknown key at ``loc``, or ``""``."""
    *parent, key = loc
    if not isinstance(key, str):
        return ""
    close = get_close_matches(key, sorted(_keys_at(tuple(parent))), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


@cache
def _keys_at(path: PathKey) -> frozenset[str]:
    schema = policy_json_schema()
    nodes = [schema]
    for part in path:
        nodes = [
            child
            for node in nodes
            for branch in _branches(schema, node)
            for child in _step(branch, part)
        ]
    return frozenset(
        key for node in nodes for branch in _branches(schema, node) for key in _properties(branch)
    )


def _branches(root: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """A node with its references resolved and its unions spread."""
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        return _branches(root, root["$defs"][name])
    spread = [
        branch
        for key in ("anyOf", "oneOf", "allOf")
        for option in node.get(key, [])
        for branch in _branches(root, option)
    ]
    return [node, *spread]


def _step(node: dict[str, Any], part: str | int) -> list[dict[str, Any]]:
    if isinstance(part, int):
        items = node.get("items")
        return [items] if isinstance(items, dict) else []
    child = node.get("properties", {}).get(part)
    return [child] if isinstance(child, dict) else []


def _properties(node: dict[str, Any]) -> list[str]:
    return list(node.get("properties", {}))
