"""`remediator schema`: the JSON Schema editors use accepts every shipped policy.

``jsonschema`` is not a dependency, so the test carries a small validator for exactly
the keywords the emitted schema uses; it refuses a schema with any other keyword, so a
new keyword cannot make the check pass by being ignored.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controller.cli import main
from controller.policy.json_schema import policy_json_schema
from controller.policy.schema import Policy
from tests.conftest import BASE_POLICY

POLICIES = sorted(Path(__file__).parents[2].joinpath("policies").glob("*.yaml"))
ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default", "format"}
TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def problems(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = "") -> list[str]:
    """Why ``value`` does not match ``schema`` (draft 2020-12 subset); empty if it does."""
    unknown = set(schema) - ANNOTATIONS - set(CHECKS)
    assert not unknown, f"the test validator does not know {unknown} (at {at or '/'})"
    found: list[str] = []
    for keyword, check in CHECKS.items():
        if keyword in schema:
            found.extend(check(schema[keyword], value, schema, root, at))
    return found


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, TYPES[kind])


def _ref(ref: str, value: Any, _: Any, root: dict[str, Any], at: str) -> list[str]:
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return problems(target, value, root, at)


def _properties(props: dict[str, Any], value: Any, _: Any, root: Any, at: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [
        p
        for key, sub in props.items()
        if key in value
        for p in problems(sub, value[key], root, f"{at}/{key}")
    ]


def _additional(allowed: Any, value: Any, schema: dict[str, Any], root: Any, at: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    extra = [k for k in value if k not in schema.get("properties", {})]
    if allowed is False:
        return [f"{at}/{k}: not allowed" for k in extra]
    return [p for k in extra for p in problems(allowed, value[k], root, f"{at}/{k}")]


def _matches(subs: list[Any], value: Any, root: Any, at: str) -> int:
    return sum(not problems(sub, value, root, at) for sub in subs)


CHECKS: dict[str, Any] = {
    "$ref": _ref,
    "type": lambda kind, v, s, r, at: [] if _is(kind, v) else [f"{at}: not {kind}"],
    "enum": lambda options, v, s, r, at: [] if v in options else [f"{at}: {v!r} not in {options}"],
    "const": lambda c, v, s, r, at: [] if v == c else [f"{at}: {v!r} is not {c!r}"],
    "pattern": lambda p, v, s, r, at: (
        [f"{at}: {v!r} !~ {p}"] if isinstance(v, str) and not re.search(p, v) else []
    ),
    "minLength": lambda n, v, s, r, at: (
        [f"{at}: too short"] if isinstance(v, str) and len(v) < n else []
    ),
    "minimum": lambda n, v, s, r, at: [f"{at}: < {n}"] if _is("number", v) and v < n else [],
    "maximum": lambda n, v, s, r, at: [f"{at}: > {n}"] if _is("number", v) and v > n else [],
    "exclusiveMinimum": lambda n, v, s, r, at: (
        [f"{at}: <= {n}"] if _is("number", v) and v <= n else []
    ),
    "minItems": lambda n, v, s, r, at: (
        [f"{at}: too few"] if isinstance(v, list) and len(v) < n else []
    ),
    "items": lambda sub, v, s, r, at: (
        [p for i, item in enumerate(v) for p in problems(sub, item, r, f"{at}/{i}")]
        if isinstance(v, list)
        else []
    ),
    "required": lambda keys, v, s, r, at: (
        [f"{at}/{k}: required" for k in keys if k not in v] if isinstance(v, dict) else []
    ),
    "properties": _properties,
    "additionalProperties": _additional,
    "minProperties": lambda n, v, s, r, at: (
        [f"{at}: too few keys"] if isinstance(v, dict) and len(v) < n else []
    ),
    "maxProperties": lambda n, v, s, r, at: (
        [f"{at}: too many keys"] if isinstance(v, dict) and len(v) > n else []
    ),
    "anyOf": lambda subs, v, s, r, at: [] if _matches(subs, v, r, at) else [f"{at}: matches none"],
    "oneOf": lambda subs, v, s, r, at: (
        [] if _matches(subs, v, r, at) == 1 else [f"{at}: must match exactly one"]
    ),
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return policy_json_schema()


def test_schema_command_writes_the_schema_to_a_file(tmp_path: Path) -> None:
    """`schema --output FILE` writes the draft 2020-12 schema, named, as JSON."""
    out = tmp_path / "remediator-policy.schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == policy_json_schema()
    assert written["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert written["$id"] and written["title"].startswith("Remediator policy")
    assert written["properties"]["apiVersion"]["const"] == "remediator/v1"


def test_schema_command_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == policy_json_schema()


def test_schema_to_a_folder_that_does_not_exist_is_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file could not be written: exit 1 with the reason, no traceback."""
    assert main(["schema", "--output", str(tmp_path / "missing" / "s.json")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("path", POLICIES, ids=[p.name for p in POLICIES])
def test_every_shipped_policy_validates_against_the_schema(
    schema: dict[str, Any], path: Path
) -> None:
    """What `remediator validate` accepts, an editor must not underline."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents
    for document in documents:
        assert problems(schema, document, schema) == []


def test_there_are_policies_to_check() -> None:
    assert len(POLICIES) >= 5


def test_durations_are_written_as_policies_write_them(schema: dict[str, Any]) -> None:
    """`5m`, `1h30m` match; a bare number (seconds? minutes?) is underlined, as
    `remediator validate` refuses it; ISO 8601 defaults would confuse a reader."""
    cooldown = schema["$defs"]["Guards"]["properties"]["cooldown"]
    assert cooldown["default"] == "5m"
    for good in ("5m", "1h30m", "250ms"):
        assert problems(cooldown, good, schema) == [], good
    for bad in ("5x", "90", 30):
        assert problems(cooldown, bad, schema), bad


def mutated(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE_POLICY)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("colour", "blue"),  # unknown key
        ("objectives.0.for", "5x"),  # not a duration
        ("remediation.0", {"scaleOut": {"step": 1}, "scaleUp": {"maxCpu": 2.0}}),  # two actions
        ("remediation.0", {}),  # no action
        ("objectives.0.signal", {"type": "logs", "query": "x", "workspaceId": "ws"}),  # no GUID
        ("kind", "Policies"),
    ],
)
def test_the_schema_rejects_what_the_loader_rejects(
    schema: dict[str, Any], path: str, value: Any
) -> None:
    """A typo shows in the editor as it does in `remediator validate`."""
    bad = mutated(path, value)
    with pytest.raises(ValidationError):
        Policy.model_validate(bad)
    assert problems(schema, bad, schema)


def test_a_signal_without_a_type_is_an_azure_monitor_metric(schema: dict[str, Any]) -> None:
    """`signal: {metric: …}` is valid: the type defaults, so the schema must not demand it."""
    assert "type" not in BASE_POLICY["objectives"][0]["signal"]
    assert problems(schema, BASE_POLICY, schema) == []
    step = mutated("remediation.0", {"restartRevision": None})  # `- restartRevision:` is {}
    assert problems(schema, step, schema) == []
