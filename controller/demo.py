"""The demo and the standalone emulator command.

``remediator demo`` runs the emulator and the controller in one process, on scenario
time that runs faster than wall time, and talks to the emulator over loopback HTTP
through the real Azure SDK clients — the same path as production, minus Azure.
The controller is configured exactly as a user would configure it: from the settings
file the emulator writes. Its HTTP endpoints can be served too, and kept up after the
scenario (``--linger``) with scenario time stopped at the end, so a user can look around.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from controller.audit.log import read_records
from controller.clock import Clock, ScaledClock, VirtualClock
from controller.config import load_settings
from controller.emulator import Emulator, Scenario, load_scenario, write_settings
from controller.model import Mode
from controller.reconcile import PassResult
from controller.render import pass_line
from controller.runtime import Runtime, open_runtime
from controller.server import serving

PROGRESS_EVERY = timedelta(minutes=2)


async def serve_emulator(
    scenario_name: str,
    host: str,
    port: int,
    speed: float | None,
    write_config: Path | None,
    lro_polls: int = 1,
    lro_retry_after: int = 0,
    wobble: float = 0.005,
) -> int:
    """Serve the emulator until interrupted; optionally write settings that point at it."""
    scenario = load_scenario(scenario_name)
    clock = ScaledClock.starting_now(scenario.start, speed or scenario.speed)
    emulator = Emulator(
        scenario,
        now=clock.now,
        lro_polls=lro_polls,
        lro_retry_after=lro_retry_after,
        wobble=wobble,
    )
    async with emulator.serve(host=host, port=port) as base_url:
        print(f"emulator: scenario {scenario.name!r} on {base_url} at {clock.speed:g}x", flush=True)
        if write_config is not None:
            path = write_settings(
                write_config,
                base_url=base_url,
                scenario=scenario,
                clock_anchor_wall=clock.anchor_wall,
                clock_anchor_scenario=clock.anchor_scenario,
                speed=clock.speed,
            )
            print(f"emulator: wrote controller settings to {path}", flush=True)
        await anyio.sleep_forever()
    return 0


class Progress:
    """Prints a pass when something happens, and a heartbeat every two scenario minutes."""

    def __init__(self, clock: Clock, start: datetime) -> None:
        self._clock = clock
        self._start = start
        self._last: dict[str, tuple[str, datetime]] = {}

    def __call__(self, result: PassResult) -> None:
        now = self._clock.now()
        states = ",".join(v.state.value for v in result.verdicts)
        previous = self._last.get(result.policy)
        due = previous is None or now - previous[1] >= PROGRESS_EVERY
        if result.decision is not None or previous is None or previous[0] != states or due:
            print(pass_line(result, now, since=self._start), flush=True)
            self._last[result.policy] = (states, now)


async def run_demo(
    scenario_name: str,
    mode: Mode,
    audit: Path | None,
    speed: float | None,
    virtual: VirtualClock | None = None,
    listen: tuple[str, int] | None = None,
    linger: float = 0.0,
) -> dict[str, Any]:
    """Run one scenario to its end; return the summary the CLI prints last.

    With ``virtual``, scenario time is a virtual clock driven as fast as the loop
    allows (tests); otherwise it runs ``speed`` times faster than wall time. With
    ``listen``, the controller's endpoints are served there (port 0: any free port) and
    stay up ``linger`` seconds after the scenario, or until SIGINT or SIGTERM.
    """
    scenario = load_scenario(scenario_name)
    scaled = ScaledClock.starting_now(scenario.start, speed or scenario.speed)
    clock: Clock = virtual or scaled
    emulator = Emulator(scenario, now=clock.now)
    with tempfile.TemporaryDirectory(prefix="remediator-demo-") as tmp:
        audit_path = audit or Path(tmp) / "audit.jsonl"
        async with emulator.serve(host="127.0.0.1", port=0) as base_url:
            config = write_settings(
                Path(tmp) / "settings.yaml",
                base_url=base_url,
                scenario=scenario,
                clock_anchor_wall=scaled.anchor_wall,
                clock_anchor_scenario=scaled.anchor_scenario,
                speed=scaled.speed,
                mode=mode.value,
            )
            pause = {k: v for k, v in os.environ.items() if k == "REMEDIATOR_PAUSE"}
            settings = load_settings(
                config, environ=pause, overrides={"auditPath": str(audit_path), "listen": "off"}
            )
            print(
                f"demo: scenario {scenario.name!r} ({scenario.description}) — {mode.value}, "
                f"{scenario.duration} of scenario time"
                + ("" if virtual else f" at {scaled.speed:g}x"),
                flush=True,
            )
            progress = Progress(clock, scenario.start)
            end = scenario.start + scenario.duration
            async with (
                open_runtime(settings, clock=clock, on_pass=progress) as runtime,
                _endpoints(runtime, end, listen) as url,
            ):
                if virtual is None:
                    with anyio.move_on_after(_wall_seconds(end, scaled)):
                        await runtime.loop.run()
                else:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(runtime.loop.run)
                        await virtual.drive(end, sleepers=len(runtime.loop.reconcilers))
                        tg.cancel_scope.cancel()
                if url is not None and linger > 0:
                    print(
                        f"demo: scenario over; {url}/ stays up for {linger:g}s (Ctrl-C to end)",
                        flush=True,
                    )
                    await wait_or_signal(linger)
        return summarize(scenario, mode, audit_path, emulator)


@dataclass(frozen=True)
class StoppedAt:
    """Scenario time that stops at the scenario's end: once it is over nothing runs, and
    ``/healthz`` must show the controller as it ended, not as a loop gone stalled."""

    clock: Clock
    end: datetime

    def now(self) -> datetime:
        return min(self.clock.now(), self.end)

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)


@asynccontextmanager
async def _endpoints(
    runtime: Runtime, end: datetime, listen: tuple[str, int] | None
) -> AsyncIterator[str | None]:
    """The controller's routes, served as ``remediator run`` serves them; the URL or None."""
    if listen is None:
        yield None
        return
    # the runtime's own app (status page included), on time that stops with the scenario
    app = replace(runtime, clock=StoppedAt(runtime.clock, end)).app()
    async with serving(app, *listen) as url:
        print(
            f"demo: controller endpoints on {url}/ (status page; /metrics, /healthz, /readyz)",
            flush=True,
        )
        yield url


async def wait_or_signal(seconds: float) -> None:
    """Sleep ``seconds``; SIGINT or SIGTERM ends it early, quietly."""
    with (
        anyio.move_on_after(seconds),
        anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
    ):
        async for _ in signals:
            return


def _wall_seconds(end: datetime, clock: ScaledClock) -> float:
    remaining = end - clock.now()
    return max(0.0, remaining.total_seconds() / clock.speed)


def _final(res: dict[str, Any]) -> dict[str, Any]:
    """How a resource ended, in its own terms."""
    if res.get("type") != "containerApp":
        return {k: v for k, v in res.items() if k not in ("type", "name")}
    return {
        "replicas": res.get("replicas"),
        "minReplicas": res.get("minReplicas"),
        "cpu": [c.get("cpu") for c in res.get("containers", [])],
        "cpuPercent": res.get("cpuPercent"),
        "memoryPercent": res.get("memoryPercent"),
        "restarts": res.get("restarts"),
        "errorRatePercent": res.get("errorRatePercent"),
        "traffic": res.get("traffic"),
        "healthy": not res.get("hung"),
    }


def summarize(
    scenario: Scenario, mode: Mode, audit_path: Path, emulator: Emulator
) -> dict[str, Any]:
    """The JSON the demo prints last: what ran, what was written, how it ended."""
    ran: Counter[str] = Counter()
    would: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    first_decision: dict[str, Any] | None = None
    for record in read_records(audit_path):
        if record.get("decision") is None or record.get("kind") == "intent":
            continue
        if first_decision is None:
            first_decision = {k: record[k] for k in ("action", "params", "decision", "outcome")}
        if record.get("outcome") == "succeeded":
            ran[record["action"]] += 1
        elif record["outcome"] == "would-run":
            would[record["action"]] += 1
        elif record["decision"] == "deny":
            denied[record["guard"] or "other"] += 1
    state = emulator.state()
    final = {res["name"]: _final(res) for res in state["resources"].values()}
    return {
        "scenario": scenario.name,
        "mode": mode.value,
        "actions": dict(ran),
        "wouldRun": dict(would),
        "denied": dict(denied),
        "firstDecision": first_decision,
        "writes": state["writes"],
        "final": final,
    }
