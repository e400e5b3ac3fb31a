"""``remediator config show``: the settings a command would run with, where each value
came from, and no secret.

:func:`~controller.config.load_settings` names origins only in its errors, so they are
recomputed here by the same rules: a key of the file (with its line), an environment
variable (which replaces the file's value whole), or the default. Secrets are the fields
declared ``repr=False``: the webhook keeps its scheme and host, a connection string its
keys, any other such field nothing; userinfo and query values of any URL are masked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel, to_snake

from controller.config import ENV_PREFIX, Settings, load_settings
from controller.durations import format_duration

MASK = "***"
KeyPath = tuple[str, ...]
# Connection-string parts that are credentials (Azure Storage, Service Bus, SQL styles).
_SECRET_PARTS = frozenset(
    {"accountkey", "sharedaccesssignature", "sharedaccesskey", "password", "pwd"}
)


@dataclass(frozen=True)
class SettingsView:
    """Effective settings as plain, masked data, and each leaf's origin by dotted key."""

    file: str | None
    values: dict[str, Any]
    origins: dict[str, str]

    def as_json(self) -> str:
        return json.dumps(
            {"file": self.file, "settings": self.values, "origins": self.origins}, indent=2
        )

    def as_yaml(self) -> str:
        """YAML a settings file could hold, each value commented with its origin."""
        head = f"# effective settings: {self.file or 'no file'} + REMEDIATOR_* + defaults"
        return "\n".join([head, *_yaml_lines(self.values, (), self.origins)])


def settings_view(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> SettingsView:
    """Load settings as a command would (SettingsError on bad ones) and explain them."""
    environ = os.environ if environ is None else environ
    settings = load_settings(path, environ)
    provided = _environment_origins(environ, _file_origins(Path(path)) if path else {})
    values = _plain(settings.model_dump(by_alias=True))
    masked = _mask(values, (), _secret_paths(Settings))
    origins = {".".join(leaf): provided.get(leaf, "default") for leaf in _leaves(masked, ())}
    return SettingsView(str(path) if path else None, masked, origins)


def mask_url(url: str) -> str:
    """Hide a URL's userinfo and query values; keep where it points."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(f"{k}={MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_webhook(url: str) -> str:
    """An incoming webhook's path is its key: show only scheme and host."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    secret = parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{netloc}" + (f"/{MASK}" if secret else "")


def mask_connection_string(text: str) -> str:
    """``AccountKey=***``, ``SharedAccessSignature=***``; names and endpoints stay readable."""
    out = []
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() in _SECRET_PARTS:
            out.append(f"{key}={MASK}")
        elif sep and value.strip().startswith(("http://", "https://")):
            out.append(f"{key}={mask_url(value)}")
        else:
            out.append(part)
    return ";".join(out)


_MASKERS = {
    ("escalationWebhook",): mask_webhook,
    ("leaderElection", "connectionString"): mask_connection_string,
    ("shards", "connectionString"): mask_connection_string,
}


def _mask(value: Any, path: KeyPath, secrets: set[KeyPath]) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, (*path, k), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, path, secrets) for v in value]
    if not isinstance(value, str):
        return value
    if path in secrets:
        masker = _MASKERS.get(path)
        return masker(value) if masker else MASK
    if value.startswith(("http://", "https://")):
        return mask_url(value)
    return value


def _secret_paths(model: type[BaseModel], prefix: KeyPath = ()) -> set[KeyPath]:
    """Every field declared ``repr=False``, by alias path, nested models included."""
    found: set[KeyPath] = set()
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        if not field.repr:
            found.add(path)
        for kind in (field.annotation, *get_args(field.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= _secret_paths(kind, path)
    return found


def _file_origins(path: Path) -> dict[KeyPath, str]:
    """``file:line`` of every mapping key in the settings file, nested ones included."""
    node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    found: dict[KeyPath, str] = {}

    def walk(node: yaml.Node | None, prefix: KeyPath) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                where = (*prefix, to_camel(str(key.value)))
                found[where] = f"{path}:{key.start_mark.line + 1}"
                walk(value, where)

    walk(node, ())
    return found


def _environment_origins(
    environ: Mapping[str, str], origins: dict[KeyPath, str]
) -> dict[KeyPath, str]:
    """Overlay the variables load_settings reads; a variable replaces its key's whole value."""
    known = {to_camel(name) for name in Settings.model_fields}
    found = dict(origins)
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        key = to_camel(to_snake(var.removeprefix(ENV_PREFIX).lower()))
        if key not in known:
            continue
        origin = f"environment variable {var}"
        found = {p: o for p, o in found.items() if p[0] != key}
        found[(key,)] = origin
        if raw.lstrip().startswith("{"):
            for nested in _leaves(json.loads(raw), (key,)):
                for end in range(2, len(nested) + 1):
                    found[tuple(to_camel(p) for p in nested[:end])] = origin
    return found


def _leaves(value: Any, path: KeyPath) -> list[KeyPath]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    return [path]


def _plain(value: Any) -> Any:
    """JSON- and YAML-ready values, durations spelled as a settings file spells them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, timedelta):
        whole = value.total_seconds() == int(value.total_seconds())
        return format_duration(value) if whole else f"{value.total_seconds():g}s"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def _yaml_lines(values: dict[str, Any], path: KeyPath, origins: dict[str, str]) -> list[str]:
    pad = "  " * len(path)
    lines = []
    for key, value in values.items():
        where = (*path, key)
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.extend(_yaml_lines(value, where, origins))
        else:
            origin = origins.get(".".join(where), "default")
            lines.append(f"{pad}{key}: {_flow(value)}  # {origin}")
    return lines


def _flow(value: Any) -> str:
    """One value in YAML flow style, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31)
    return text.removesuffix("\n...\n").strip()
