"""Read YAML that a person wrote, within limits a person's file never reaches.

A policy is a few kilobytes, a few levels deep, with an anchor or two. A file far past
that is a mistake or an attack: a billion-laughs file (aliases of aliases) expands to
gigabytes, a 5,000-deep ``[[[…`` overflows the parser's recursion, 50 MB takes minutes.
Each is refused before it is composed, naming the line where the limit was crossed.
The check walks PyYAML's event stream, which is flat (no recursion) and holds aliases
unexpanded, so it costs one pass over the text whatever the file holds.
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_FILE_BYTES = 1024 * 1024  # 1 MiB: a policy or settings file is a few kilobytes
MAX_DEPTH = 64  # nested mappings and lists; a policy is under ten deep
MAX_ALIAS_NODES = 10_000  # values aliases may add to a file, over what it spells out

# libyaml's parser, when PyYAML was built with it: ten times the pure-Python one, which a
# fleet's policy files (10,000 policies) take most of a minute to go through
FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(Exception):
    """The file cannot be read as YAML, or crosses a limit; ``line`` is 1-based (0: the
    whole file)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"{line}: {message}")


def read_capped(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The file's text, refusing more than ``limit`` bytes without reading past them.
    Raises OSError, UnicodeDecodeError or :class:`YamlRefused`."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise YamlRefused(0, f"larger than {_size(limit)}: a policy or settings file is a few KiB")
    return data.decode("utf-8")


def check_shape(text: str) -> None:
    """Refuse syntax errors, nesting deeper than MAX_DEPTH and alias expansion past
    MAX_ALIAS_NODES, naming the line. What passes composes and loads in bounded memory.

    The events are walked by libyaml when it is there; a file it cannot parse is walked
    again by the pure-Python parser, whose messages (and lines) are the ones reported."""
    if FAST_LOADER is not yaml.SafeLoader:
        try:
            _check_events(text, FAST_LOADER)
            return
        except yaml.YAMLError:
            pass  # a syntax error: located and worded below
    _check_events(text, yaml.SafeLoader)


def _check_events(text: str, loader: type[yaml.SafeLoader]) -> None:
    sizes: dict[str, int] = {}  # an anchor's node count, aliases inside it expanded
    counts: list[int] = []  # per open collection: its node count so far
    anchors: list[str | None] = []  # and its anchor
    added = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.CollectionStartEvent):
                if len(counts) >= MAX_DEPTH:
                    raise YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
                counts.append(1)
                anchors.append(event.anchor)
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                size = counts.pop()
                anchor = anchors.pop()
                if anchor:
                    sizes[anchor] = size
            elif isinstance(event, yaml.AliasEvent):
                size = sizes.get(event.anchor or "", 1)
                added += size
                if added > MAX_ALIAS_NODES:
                    raise YamlRefused(
                        line,
                        f"aliases expand the file by more than {MAX_ALIAS_NODES} values "
                        f"(*{event.anchor} here): write the values out",
                    )
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            else:
                continue
            if counts:
                counts[-1] += size
    except yaml.MarkedYAMLError as exc:
        if loader is not yaml.SafeLoader:
            raise
        mark = exc.problem_mark or exc.context_mark
        raise YamlRefused(
            mark.line + 1 if mark else 0, f"YAML syntax error: {exc.problem or exc}"
        ) from None
    except yaml.reader.ReaderError as exc:  # a NUL or other control character
        if loader is not yaml.SafeLoader:
            raise
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        raise YamlRefused(line, f"not YAML text: character #x{code:04x} is not allowed") from None


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit / 1024:g} KiB"
