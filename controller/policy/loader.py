"""Load policy files, reporting every problem as ``FILE:LINE: message``.

PyYAML's node tree keeps each key's line, and pydantic reports each error's location
as a key path; joining the two names the line of the offending key. All files are
read and checked before any policy is returned, so a bad file never half-applies.
Size, nesting and alias expansion are bounded (:mod:`controller.policy.safe_yaml`)
before a file is composed, and a value that makes a check raise is that document's
problem, never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor

from controller.policy.safe_yaml import FAST_LOADER, YamlRefused, check_shape, read_capped
from controller.policy.schema import Policy
from controller.policy.suggest import did_you_mean

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, located."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:  # line 0: the file as a whole, no line to point at
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


class PolicyError(Exception):
    """One or more policy files are invalid; ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    source: str
    line: int
    selected: bool = False  # a selector policy's target: the policy aimed at one resource found


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to their ``*.yaml`` / ``*.yml`` files, sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            out.append(path)
    return out


def load_policies(paths: Iterable[str | Path]) -> list[LoadedPolicy]:
    """Validate every file first, then return all policies, or raise :class:`PolicyError`."""
    files = policy_files(paths)
    problems: list[Problem] = []
    loaded: list[LoadedPolicy] = []
    if not files:
        raise PolicyError([Problem("<policies>", 0, "no policy files found")])
    for file in files:
        file_loaded, file_problems = _load_file(file)
        loaded.extend(file_loaded)
        problems.extend(file_problems)
    problems.extend(_cross_file_problems(loaded))
    if problems:
        raise PolicyError(problems)
    return share_common_parts(loaded)


# The parts of a policy a fleet's policies usually spell alike (a team's template)
SHARED_PARTS = ("objectives", "remediation", "guards", "verification", "step_back", "backtest")


def share_common_parts(loaded: list[LoadedPolicy]) -> list[LoadedPolicy]:
    """Policies whose objectives, ladder, guards … are equal hold one copy of each.

    A policy is frozen, so an equal part can stand for another: ten thousand policies
    from one template keep one set of their objectives and guards (about 5 KiB a
    policy, a third of a target's memory), not ten thousand."""
    seen: dict[tuple[str, str], Any] = {}
    out: list[LoadedPolicy] = []
    for item in loaded:
        dumped = item.policy.model_dump(mode="json", include=set(SHARED_PARTS))
        shared = {}
        for part in SHARED_PARTS:
            own = getattr(item.policy, part)
            first = seen.setdefault((part, json.dumps(dumped[part], sort_keys=True)), own)
            shared[part] = first if first == own else own
        # built from the validated policy's own values, not validated again: equal parts
        fields = {name: getattr(item.policy, name) for name in Policy.model_fields}
        policy = Policy.model_construct(item.policy.model_fields_set, **{**fields, **shared})
        out.append(replace(item, policy=policy))
    return out


def _load_file(file: Path) -> tuple[list[LoadedPolicy], list[Problem]]:
    name = str(file)
    try:
        text = read_capped(file)
        check_shape(text)  # size, depth and aliases bounded before anything is built
        documents = [d for d in yaml.compose_all(text, Loader=FAST_LOADER) if d is not None]
    except FileNotFoundError:
        return [], [Problem(name, 0, "no such file")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(name, 0, f"cannot read: {exc}")]
    except YamlRefused as exc:
        return [], [Problem(name, exc.line, exc.message)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        return [], [Problem(name, line, f"YAML syntax error: {exc.problem or exc}")]
    problems: list[Problem] = []
    loaded: list[LoadedPolicy] = []
    for node in documents:
        try:
            loaded_one, found = _load_document(node, name)
        except (ArithmeticError, RecursionError, TypeError, ValueError) as exc:
            # whatever a value did to a check, it is this document's problem, not a crash
            line = node.start_mark.line + 1
            found = [Problem(name, line, f"cannot be checked: {type(exc).__name__}: {exc}")]
            loaded_one = None
        problems.extend(found)
        if loaded_one is not None:
            loaded.append(loaded_one)
    return loaded, problems


def _load_document(node: yaml.Node, name: str) -> tuple[LoadedPolicy | None, list[Problem]]:
    """One YAML document as a validated policy, or its problems."""
    problems: list[Problem] = []
    lines: dict[PathKey, int] = {}
    problems.extend(_index_lines(node, (), lines, name))
    try:  # built from the node already composed (its lines indexed), not parsed again
        data = SafeConstructor().construct_document(node)
    except yaml.YAMLError as exc:
        problems.append(Problem(name, node.start_mark.line + 1, f"invalid YAML: {exc}"))
        return None, problems
    if not isinstance(data, dict):
        problems.append(Problem(name, node.start_mark.line + 1, "a policy must be a mapping"))
        return None, problems
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems.extend(_located(exc, lines, name, node.start_mark.line + 1))
        return None, problems
    return LoadedPolicy(policy, name, node.start_mark.line + 1), problems


def _index_lines(
    node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str
) -> Iterator[Problem]:
    """Record the line of every key path; report duplicate keys (YAML would drop one)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                yield Problem(file, key_node.start_mark.line + 1, f"duplicate key '{key}'")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            yield from _index_lines(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _index_lines(item, (*path, index), lines, file)


_PATH_PREFIX = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)*): (.*)$", re.S)


def _located(
    exc: ValidationError, lines: dict[PathKey, int], file: str, doc_line: int
) -> Iterator[Problem]:
    for error in exc.errors():
        loc: PathKey = _without_union_tags(tuple(error["loc"]))
        message = _message(error)
        if error["type"] == "extra_forbidden":
            message += did_you_mean(loc)
        # A cross-field check names the key it is about; point at that key's line.
        match = _PATH_PREFIX.match(message)
        if match:
            inner = tuple(int(p) if p.isdigit() else p for p in match.group(1).split("."))
            if (*loc, *inner) in lines:
                loc, message = (*loc, *inner), match.group(2)
        line = doc_line
        for end in range(len(loc), -1, -1):
            if loc[:end] in lines:
                line = lines[loc[:end]]
                break
        where = ".".join(str(part) for part in loc)
        yield Problem(file, line, f"{where}: {message}" if where else message)


SIGNAL_TYPES = frozenset({"azureMonitor", "logs", "prometheus", "httpProbe"})


def _without_union_tags(loc: PathKey) -> PathKey:
    """pydantic names the union member it tried (``signal.logs.query``); YAML does not."""
    return tuple(
        part
        for index, part in enumerate(loc)
        if not (index and loc[index - 1] == "signal" and part in SIGNAL_TYPES)
    )


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    text = str(error["msg"])
    return text.removeprefix("Value error, ")


def _cross_file_problems(loaded: list[LoadedPolicy]) -> Iterator[Problem]:
    """Names identify policies in the audit log, and each target has one owner.

    Two policies on one resource would each keep their own cooldown and budget, so
    together they could act twice as often as either allows: that is refused.
    """
    names: dict[str, LoadedPolicy] = {}
    targets: dict[str, LoadedPolicy] = {}
    for item in loaded:
        earlier = names.setdefault(item.policy.name, item)
        if earlier is not item:
            yield Problem(
                item.source,
                item.line,
                f"policy name '{item.policy.name}' is already used at "
                f"{earlier.source}:{earlier.line}",
            )
            continue
        if item.policy.target.is_selector:
            continue  # what a selector finds is known at discovery, and checked then
        owner = targets.setdefault(item.policy.target.resource_id.lower(), item)
        if owner is not item:
            yield Problem(
                item.source,
                item.line,
                f"target {item.policy.target.resource_id} already belongs to policy "
                f"'{owner.policy.name}' ({owner.source}:{owner.line}); put all of a target's "
                "objectives in one policy",
            )
