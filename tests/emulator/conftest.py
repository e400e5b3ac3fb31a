"""Fixtures for the emulator tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.emulator import Emulator, Scenario, load_scenario

from .support import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_emulator(clock: ManualClock) -> Callable[..., Emulator]:
    def make(scenario: str | Scenario = "cpu-spike", **kwargs: Any) -> Emulator:
        sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
        kwargs.setdefault("wobble", 0.0)
        return Emulator(sc, now=clock.now, **kwargs)

    return make
