"""HTTP probes: one GET per objective per pass, reported as a number.

A probe fails when the answer's status is not in ``expectStatus`` (redirects are not
followed: the URL's own answer is judged), when no answer comes within the timeout, or
when no connection can be made. A failure is data, not an unknown, for the counting
measures:

* ``consecutiveFailures`` — failed probes in a row so far; a success resets it to 0.
* ``failureRatio`` — failed / all probes *within the current grain bucket*. Per bucket
  rather than over the ``for`` window, so that evaluation's window rule (every bucket of
  the window violating) is what sustains it, exactly as for any metric. With one pass
  per grain each bucket holds one probe and the ratio is 0 or 1; a loop interval below
  the grain gives finer ratios.
* ``latencySeconds`` — time to the status line and headers of a successful probe; a
  failed probe has no latency and reports ``error`` (the bucket stays a gap).

Values are bucketed per objective at the signal's grain (:mod:`controller.signals.history`).
Each pass uses a fresh session, so every probe also proves a new connection can be made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from controller.clock import Clock
from controller.model import Observation
from controller.policy.probe_signals import HttpProbeSignal
from controller.policy.schema import Objective, Target
from controller.signals.history import History, Key, Reading, bucket, read_each

SessionFactory = Callable[[], aiohttp.ClientSession]


@dataclass(frozen=True)
class ProbeResult:
    """One probe: whether it passed, how long the answer took, and why it failed."""

    ok: bool
    latency: float | None  # seconds, when an answer came
    reason: str | None = None


@dataclass
class _State:
    consecutive: int = 0  # failed probes in a row
    bucket: datetime | None = None  # the bucket `probes` and `failures` count in
    probes: int = 0
    failures: int = 0


class HttpProbeSource:
    """The ``httpProbe`` signal source."""

    def __init__(
        self, clock: Clock, *, session_factory: SessionFactory = aiohttp.ClientSession
    ) -> None:
        self._clock = clock
        self._session_factory = session_factory
        self._history = History()
        self._states: dict[Key, _State] = {}

    def register(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing to prepare: every objective is its own probe, made when observed."""

    def unregister(self, target: Target, objectives: Sequence[Objective]) -> None:
        """Nothing kept per target."""

    async def observe(
        self, target: Target, objectives: Sequence[Objective], now: datetime
    ) -> dict[str, Observation]:
        """Probe once per objective, concurrently, and report each by its measure."""
        async with self._session_factory() as session:

            async def read(objective: Objective) -> Reading:
                signal: object = objective.signal
                if not isinstance(signal, HttpProbeSignal):
                    return Reading.error(f"not an httpProbe signal: {type(signal).__name__}")
                result = await probe(session, signal)
                return self._count(target.resource_id, objective, signal, result, now)

            readings = await read_each(objectives, read)
        return self._history.observe_all(
            objectives, target.resource_id, readings, now, self._clock.now()
        )

    def _count(
        self,
        target: str,
        objective: Objective,
        signal: HttpProbeSignal,
        result: ProbeResult,
        now: datetime,
    ) -> Reading:
        """Fold one probe into the objective's state; the reading its measure asks for."""
        state = self._states.setdefault((target, objective.name), _State())
        current = bucket(now, signal.grain)
        if state.bucket != current:
            state.bucket, state.probes, state.failures = current, 0, 0
        state.probes += 1
        if result.ok:
            state.consecutive = 0
        else:
            state.consecutive += 1
            state.failures += 1
        if signal.measure == "consecutiveFailures":
            return Reading(float(state.consecutive))
        if signal.measure == "failureRatio":
            return Reading(state.failures / state.probes)
        if result.ok and result.latency is not None:
            return Reading(result.latency)
        return Reading.error(f"probe failed, no latency: {result.reason}")


async def probe(session: aiohttp.ClientSession, signal: HttpProbeSignal) -> ProbeResult:
    """GET ``signal.url`` once; never raises for what the network or server does."""
    seconds = signal.timeout.total_seconds()
    started = time.perf_counter()  # a duration, not a timestamp: the real elapsed time
    try:
        async with session.get(
            signal.url,
            timeout=aiohttp.ClientTimeout(total=seconds),
            allow_redirects=False,
        ) as response:
            latency = time.perf_counter() - started
            status = response.status
    except TimeoutError:
        return ProbeResult(False, None, f"no answer within {seconds:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return ProbeResult(False, None, f"{type(exc).__name__}: {exc}"[:300])
    if status not in signal.expect_status:
        expected = ", ".join(str(s) for s in signal.expect_status)
        return ProbeResult(False, latency, f"HTTP {status}, expected {expected}")
    return ProbeResult(True, latency)
