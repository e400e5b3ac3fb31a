"""The package's public surface is deliberate."""

from __future__ import annotations

import types

import controller


def test_public_names_are_curated_and_importable() -> None:
    """Every name in __all__ exists, and nothing else public is exported by accident."""
    assert sorted(controller.__all__) == controller.__all__
    for name in controller.__all__:
        assert hasattr(controller, name), name
    public = {
        name
        for name, value in vars(controller).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(controller.__all__)
