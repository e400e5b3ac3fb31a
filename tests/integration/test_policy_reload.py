"""Policies reload while the controller runs: a bad set is rejected whole and the last
good set keeps running; a good set is applied, keeping each unchanged target as it was."""

from __future__ import annotations

import copy
import os
import random
import signal
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import yaml

from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.runtime import fingerprint, open_runtime, watch_policies
from tests.conftest import BASE_POLICY, START, emulator_settings

pytestmark = pytest.mark.anyio
WORKER = BASE_POLICY["target"]["resourceId"].replace("agentstudio-api", "agentstudio-worker")


def write(folder: Path, name: str, policy: dict[str, object]) -> None:
    (folder / name).write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")


async def test_a_bad_reload_keeps_the_last_good_set_and_a_good_one_applies(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "api.yaml", BASE_POLICY)
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=2), sleepers=1)
        [api] = runtime.loop.reconcilers
        before = fingerprint(settings.policies)

        # a second policy with a mistake in it: the whole set is refused
        worker = copy.deepcopy(BASE_POLICY)
        worker["metadata"] = {"name": "worker-cpu"}
        worker["target"] = {"type": "containerApp", "resourceId": WORKER}
        broken = {**worker, "objectives": [{**worker["objectives"][0], "for": "5x"}]}
        write(folder, "worker.yaml", broken)
        assert fingerprint(settings.policies) != before
        assert runtime.reload() is False
        assert runtime.loop.reconcilers == [api]
        ready, detail = await runtime.readiness.check()
        assert not ready
        assert "worker.yaml" in detail["checks"]["policies"]["problem"]
        await clock.drive(START + timedelta(minutes=4), sleepers=1)
        assert runtime.loop.health.last_tick["api-cpu"] > START + timedelta(minutes=3)

        # fixed: applied; the unchanged target keeps its reconciler, the new one starts
        write(folder, "worker.yaml", worker)
        assert runtime.reload() is True
        names = [r.policy.name for r in runtime.loop.reconcilers]
        assert names == ["api-cpu", "worker-cpu"] and runtime.loop.reconcilers[0] is api
        await clock.drive(START + timedelta(minutes=6), sleepers=2)
        assert "worker-cpu" in runtime.loop.health.last_tick
        ready, _ = await runtime.readiness.check()
        assert ready

        # a removed policy stops
        (folder / "api.yaml").unlink()
        assert runtime.reload() is True
        assert [r.policy.name for r in runtime.loop.reconcilers] == ["worker-cpu"]
        assert "api-cpu" not in runtime.loop.health.last_tick
        tg.cancel_scope.cancel()
    samples = {
        s.labels["result"]: s.value
        for metric in runtime.metrics.policy_reloads.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert samples == {"rejected": 1.0, "applied": 2.0}


async def test_a_changed_file_or_sighup_reloads(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The watcher notices a changed file within its check interval, and SIGHUP at once."""
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "api.yaml", BASE_POLICY)
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(watch_policies, runtime, 10.0)
        await clock.drive(START + timedelta(seconds=5), sleepers=1)
        changed = {**BASE_POLICY, "interval": "45s"}
        write(folder, "api.yaml", changed)
        await clock.drive(START + timedelta(seconds=16), sleepers=1)
        assert runtime.loop.reconcilers[0].policy.interval == timedelta(seconds=45)
        write(folder, "api.yaml", {**BASE_POLICY, "interval": "50s"})
        os.kill(os.getpid(), signal.SIGHUP)
        with anyio.fail_after(5):
            while runtime.loop.reconcilers[0].policy.interval != timedelta(seconds=50):  # noqa: ASYNC110 (the signal arrives on the event loop)
                await anyio.sleep(0.001)
        tg.cancel_scope.cancel()
