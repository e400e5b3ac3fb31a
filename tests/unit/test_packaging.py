"""What the package declares is there: the licence it names, dependency ranges the tests
cover, and the exact versions the image installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def project() -> dict[str, object]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(data["project"])


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def test_the_declared_licence_file_is_mit() -> None:
    meta = project()
    assert meta["license"] == "MIT"
    assert meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert re.search(r"Copyright \(c\) \d{4} Remediator contributors", text)


def test_every_runtime_dependency_is_bounded_above() -> None:
    """A new major of any dependency is a change to test, not something pip picks."""
    for raw in project()["dependencies"]:  # type: ignore[attr-defined]
        req = Requirement(raw)
        ops = {spec.operator for spec in req.specifier}
        assert "==" in ops or "<" in ops, f"{raw}: no upper bound"


def test_the_constraints_pin_every_dependency_within_its_range() -> None:
    pinned = pins()
    for raw in project()["dependencies"]:  # type: ignore[attr-defined]
        req = Requirement(raw)
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(version), f"{req.name}=={version} outside {raw}"


def test_the_image_installs_with_the_constraints() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY constraints.txt" in dockerfile
    assert re.search(r"pip .*install .*-c \S*constraints\.txt", dockerfile.replace("\\\n", " "))
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "constraints.txt" not in ignored and "*.txt" not in ignored
