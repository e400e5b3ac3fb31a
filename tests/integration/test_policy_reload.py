"""Policies reload while the controller runs: a bad set is rejected whole and the last
good set keeps running; a good set is applied, keeping each unchanged target as it was."""

from __future__ import annotations

import copy
import os
import random
import signal
import threading
from datetime import timedelta
from pathlib import Path

import aiohttp
import anyio
import pytest
import yaml
from prometheus_client import generate_latest

from controller.audit.log import AuditLog
from controller.audit.replay import replay
from controller.background import fingerprint, watch_policies
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.runtime import open_runtime
from controller.server import serving
from tests.conftest import BASE_POLICY, START, emulator_settings
from tests.integration.helpers import audit_records
from tests.integration.test_audit_memory import intent_line

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
        assert await runtime.reload() is False
        assert runtime.loop.reconcilers == [api]
        ready, detail = await runtime.readiness.check()
        assert not ready
        assert "worker.yaml" in detail["checks"]["policies"]["problem"]
        await clock.drive(START + timedelta(minutes=4), sleepers=1)
        assert runtime.loop.health.last_tick["api-cpu"] > START + timedelta(minutes=3)

        # fixed: applied; the unchanged target keeps its reconciler, the new one starts
        write(folder, "worker.yaml", worker)
        assert await runtime.reload() is True
        names = [r.policy.name for r in runtime.loop.reconcilers]
        assert names == ["api-cpu", "worker-cpu"] and runtime.loop.reconcilers[0] is api
        await clock.drive(START + timedelta(minutes=6), sleepers=2)
        assert "worker-cpu" in runtime.loop.health.last_tick
        ready, _ = await runtime.readiness.check()
        assert ready

        # a removed policy stops
        (folder / "api.yaml").unlink()
        assert await runtime.reload() is True
        assert [r.policy.name for r in runtime.loop.reconcilers] == ["worker-cpu"]
        assert "api-cpu" not in runtime.loop.health.last_tick
        exposition = generate_latest(runtime.metrics.registry).decode()
        left = [line for line in exposition.splitlines() if '"api-cpu"' in line]
        for gauge in ("objective_state", "loop_lag_seconds", "paused", "budget_remaining"):
            assert not [line for line in left if line.startswith(f"remediator_{gauge}")]
        assert [line for line in exposition.splitlines() if '"worker-cpu"' in line]
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


def worker_policy() -> dict[str, object]:
    worker = copy.deepcopy(BASE_POLICY)
    worker["metadata"] = {"name": "worker-cpu"}
    worker["target"] = {"type": "containerApp", "resourceId": WORKER}
    return worker


def laughs(depth: int = 5) -> str:
    """A billion-laughs file: each key's list holds nine aliases of the one before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, depth + 1):
        lines.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


RAISING = [
    # (file text, the line the rejection names, what it says)
    (
        yaml.safe_dump({**worker_policy(), "guards": {"cooldown": "99999999999999999999d"}}),
        None,
        "guards.cooldown: a duration may be at most 3650d",
    ),
    ("kind: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 64 levels"),
    (laughs(), 5, "aliases expand the file by more than 10000 values"),
    ("kind: Policy\x00\n", 1, "not YAML text: character #x0000"),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), RAISING, ids=["overflow", "deep", "laughs", "nul"]
)
async def test_a_reload_that_would_raise_rejects_the_set_and_keeps_running(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    text: str,
    line: int | None,
    message: str,
) -> None:
    """A huge duration (OverflowError), 5,000 nested lists (RecursionError), a billion
    laughs or a NUL byte in a new file: the set is rejected like any bad one — FILE:LINE
    in the log, the metric and /readyz — and the running set carries on."""
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "api.yaml", BASE_POLICY)
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=1), sleepers=1)
        [api] = runtime.loop.reconcilers
        (folder / "worker.yaml").write_text(text, encoding="utf-8")
        with anyio.fail_after(30):
            assert await runtime.reload() is False
        assert runtime.loop.reconcilers == [api]
        ready, detail = await runtime.readiness.check()
        problem = detail["checks"]["policies"]["problem"]
        where = f"worker.yaml:{line}: " if line else "worker.yaml:"
        assert not ready and where in problem and message in problem
        await clock.drive(START + timedelta(minutes=3), sleepers=1)
        assert runtime.loop.health.last_tick["api-cpu"] > START + timedelta(minutes=2)
        tg.cancel_scope.cancel()
    [rejected] = [
        s.value
        for metric in runtime.metrics.policy_reloads.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels["result"] == "rejected"
    ]
    assert rejected == 1.0


async def test_any_exception_while_loading_rejects_the_set(
    tmp_path: Path,
    clock: VirtualClock,
    emulator: tuple[Emulator, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever loading raises — here a fault no file can cause today — the reload is
    rejected and named in /readyz; the watcher, and with it the controller, lives on."""
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "api.yaml", BASE_POLICY)
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))

    def broken(paths: object) -> list[object]:
        raise RuntimeError("the loader tripped")

    async with open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime:
        [api] = runtime.loop.reconcilers
        monkeypatch.setattr("controller.runtime.load_policies", broken)
        assert await runtime.reload() is False
        assert runtime.loop.reconcilers == [api]
        _, detail = await runtime.readiness.check()
        assert "RuntimeError: the loader tripped" in detail["checks"]["policies"]["problem"]


async def test_a_reload_reads_the_files_off_the_event_loop(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """A policy file that is slow to read (here a FIFO nobody writes to yet) holds up the
    reload, not the loop: /healthz answers while the file is still being read."""
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "api.yaml", BASE_POLICY)
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder))
    slow = folder / "worker.yaml"
    answered, fed = threading.Event(), threading.Event()

    def feed() -> None:
        # only once /healthz has answered; a loop blocked by the read gets the file after
        # 10 s instead, so the test fails rather than hangs
        answered.wait(10)
        slow.write_text(yaml.safe_dump(worker_policy()), encoding="utf-8")
        fed.set()

    applied: list[bool] = []
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime,
        serving(runtime.app(), "127.0.0.1", 0) as base,
        aiohttp.ClientSession() as http,
    ):
        os.mkfifo(slow)
        threading.Thread(target=feed, daemon=True).start()

        async def reload() -> None:
            applied.append(await runtime.reload())

        async with anyio.create_task_group() as tg:
            tg.start_soon(reload)
            await anyio.sleep(0.01)  # the reload is under way, waiting for the file
            async with http.get(base + "/healthz") as response:
                status = response.status
            before_the_file = not fed.is_set()
            answered.set()
        assert status == 200 and before_the_file
        assert applied == [True]
        assert [r.policy.name for r in runtime.loop.reconcilers] == ["api-cpu", "worker-cpu"]


@pytest.mark.parametrize("change", ["edited", "removed-and-back"])
async def test_a_reload_keeps_what_is_still_open(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str], change: str
) -> None:
    """An intent left open by a crash is settled though the policy is reloaded before its
    target's first pass: an edited policy hands its open intents to the new reconciler,
    and a policy removed and added back takes what the log still holds open."""
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "api.yaml", BASE_POLICY)
    write(folder, "worker.yaml", worker_policy())
    settings = emulator_settings(emulator[1], tmp_path, policies=str(folder), mode="live")
    with AuditLog(settings.audit_path) as audit:
        # left open by a crash before this start: minReplicas 1 → 2, never sent
        audit.append(intent_line(2).model_copy(update={"ts": START - timedelta(minutes=2)}))
    async with (
        open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime,
        anyio.create_task_group() as tg,
    ):
        edited = copy.deepcopy(BASE_POLICY)
        edited["objectives"][0]["threshold"] = 75
        if change == "removed-and-back":
            (folder / "api.yaml").unlink()
            assert await runtime.reload() is True
            assert [r.policy.name for r in runtime.loop.reconcilers] == ["worker-cpu"]
        write(folder, "api.yaml", edited)
        assert await runtime.reload() is True
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=2), sleepers=2)
        tg.cancel_scope.cancel()
    records = audit_records(Path(settings.audit_path))
    settled = [r for r in records if r["kind"] == "result" and r.get("intent") == 1]
    assert [r["outcome"] for r in settled] == ["failed"]
    assert "settled after an interruption" in settled[0]["reason"]
    assert replay(records).open_intents == {}


async def test_a_rejected_reload_still_asks_resource_graph_again(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """SIGHUP asks every selector again: a policy set rejected on that reload keeps the
    running set, whose selectors still ask (an app created since joins)."""
    scenario = load_scenario("fleet")
    emu = Emulator(scenario, now=clock.now)
    emu.clear_faults()
    folder = tmp_path / "policies"
    folder.mkdir()
    [selector] = scenario.policies
    write(folder, "fleet.yaml", selector)
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path, policies=str(folder), mode="dry-run")
        async with open_runtime(settings, clock=clock, rng=random.Random(2)) as runtime:

            def queries() -> int:
                return sum(1 for r in emu.requests if "Microsoft.ResourceGraph" in r["path"])

            asked = queries()
            assert asked >= 1
            write(folder, "broken.yaml", {**selector, "metadata": {"name": "x"}, "oops": 1})
            assert await runtime.reload() is False
            assert queries() > asked  # the running set's selector asked again
            assert runtime.readiness.policy_error is not None
            assert [p.policy.name for p in runtime.policies] == [selector["metadata"]["name"]]
