"""Write constraints.txt: the exact versions of Remediator's runtime dependencies (and
theirs) installed in this virtualenv, the set the test suite passed with.

    .venv/bin/python scripts/freeze_constraints.py   (or: make constraints)

The image installs with ``pip install -c constraints.txt``, so it runs what was tested.
"""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# The exact versions of the runtime dependencies the test suite passed with, for
# `pip install -c constraints.txt` (the Dockerfile's build). Regenerate with
# `make constraints` after changing pyproject.toml's dependencies, then run the tests.
"""


def closure(root: str) -> dict[str, str]:
    """Every distribution ``root`` needs at run time (no extras), name -> version."""
    env = {**default_environment(), "extra": ""}
    found: dict[str, str] = {}
    todo = [Requirement(r) for r in distribution(root).requires or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        dist = distribution(req.name)
        found[name] = dist.version
        todo.extend(Requirement(r) for r in dist.requires or [])
    return found


def main() -> None:
    pins = closure("remediator")
    body = "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))
    out = Path(__file__).resolve().parent.parent / "constraints.txt"
    out.write_text(HEADER + body, encoding="utf-8")
    print(f"wrote {out}: {len(pins)} pins")


if __name__ == "__main__":
    main()
