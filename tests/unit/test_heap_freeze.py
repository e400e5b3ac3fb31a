"""The run command collects a pass's garbage young and freezes what every target holds for
good out of the collector's full passes once the targets have passed; it unfreezes it
every few intervals, so garbage frozen with it (a reloaded policy's reconciler, a removed
target) is still freed."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest

from controller.background import YOUNG_COLLECTION_EVERY, tune_garbage_collection
from controller.clock import VirtualClock
from controller.runtime import Runtime

pytestmark = pytest.mark.anyio
START = datetime(2026, 1, 1, tzinfo=UTC)


class Cycle:
    """Garbage only the cyclic collector frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


async def test_standing_objects_are_frozen_after_an_interval_and_garbage_still_freed() -> None:
    clock = VirtualClock(START)
    runtime = cast(
        Runtime,
        SimpleNamespace(settings=SimpleNamespace(interval=timedelta(minutes=1)), clock=clock),
    )
    standing: list[Any] = [Cycle()]
    threshold = gc.get_threshold()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tune_garbage_collection, runtime, 3)
            await clock.drive(START + timedelta(seconds=50), sleepers=1)
            assert gc.get_freeze_count() == 0  # not before every target has passed once
            assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
            await clock.drive(START + timedelta(seconds=80), sleepers=1)
            assert gc.get_freeze_count() > 0
            gone = weakref.ref(standing.pop())  # frozen, then dropped: a removed target
            gc.collect()
            assert gone() is not None  # a frozen object is not collected …
            await clock.drive(START + timedelta(seconds=80 + 3 * 60), sleepers=1)
            assert gone() is None  # … until the next round unfreezes and collects it
            assert gc.get_freeze_count() > 0
            tg.cancel_scope.cancel()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
