"""docs/benchmarks.md is shared by every benchmark: each replaces only its own sections."""

from __future__ import annotations

from pathlib import Path


def replace_sections(path: Path, sections: dict[str, list[str]]) -> None:
    """Replace each ``## heading`` section of ``path`` with its new lines (appended when
    absent); every other section is kept as it was."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    parts = text.split("\n## ")
    head, body = parts[0], parts[1:]
    kept: list[str] = []
    done: set[str] = set()
    for part in body:
        heading = part.split("\n", 1)[0].strip()
        if heading in sections:
            kept.append(_section(heading, sections[heading]))
            done.add(heading)
        else:
            kept.append(part.rstrip("\n") + "\n")
    kept += [_section(h, lines) for h, lines in sections.items() if h not in done]
    path.write_text(head.rstrip("\n") + "\n" + "".join("\n## " + k for k in kept))


def _section(heading: str, lines: list[str]) -> str:
    return heading + "\n\n" + "\n".join(lines).strip("\n") + "\n"
