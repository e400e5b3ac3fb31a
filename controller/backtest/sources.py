"""Where history comes from: the signal backends over a past range, or live reads.

``fetch`` asks Azure Monitor, Log Analytics and Prometheus (a range query) for each
objective's series over the range (HTTP probes keep no history: record them). The
starting size of each target is read now, through the same readers the controller uses.

``record`` captures what the signal sources return, pass after pass, into a History —
the same observations the controller would judge — for later backtests and for sharing
an incident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import anyio
import structlog
from azure.core.exceptions import AzureError

from controller.azure import retry
from controller.azure.clients import AzureClients
from controller.backtest.history import History, RecordingWriter
from controller.clock import Clock
from controller.plugins import default_registry
from controller.policy.probe_signals import PrometheusSignal
from controller.policy.schema import LogsSignal, MetricSignal, Objective, Policy
from controller.signals.azure_monitor import AzureMonitorSource
from controller.signals.logs import LogsSource
from controller.signals.prometheus import HistoryError, PrometheusSource

log = structlog.get_logger("remediator.backtest")

PARALLEL_READS = 8  # reads in flight at once: well inside ARM's and Log Analytics' limits


class HistoryUnavailable(RuntimeError):
    """History that could not be read; the message names what, and why."""


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn a backend's failure into one line naming what was being read."""
    try:
        yield
    except (AzureError, HistoryError, OSError, ValueError) as exc:
        raise HistoryUnavailable(f"cannot read {what}: {retry.describe(exc)}") from exc


async def fetch(
    clients: AzureClients,
    clock: Clock,
    policies: Sequence[Policy],
    start: datetime,
    end: datetime,
    parallel: int = PARALLEL_READS,
) -> History:
    """Each objective's history over [start, end) and each target's size now. Targets'
    sizes and the per-objective queries (Log Analytics, Prometheus) are read ``parallel``
    at a time: a fleet's hundred reads one after another would take most of a minute."""
    history = History()
    metrics = AzureMonitorSource(clients, clock)
    logs = LogsSource(clients, clock)
    registry = default_registry(clients, clock)
    limiter = anyio.CapacityLimiter(parallel)
    metered = [
        (policy.target, objective)
        for policy in policies
        for objective in policy.objectives
        if isinstance(objective.signal, MetricSignal)
    ]
    with _reading("Azure Monitor metrics history"):
        series = await metrics.histories(metered, start, end)

    async def size(policy: Policy) -> None:
        async with limiter:
            with _reading(f"{policy.name}'s target {policy.target.resource_id}"):
                read = registry.read_state(policy.target.type)
                history.states[policy.name] = await read(policy.target)

    async def values(policy: Policy, objective: Objective) -> None:
        signal = objective.signal
        if isinstance(signal, MetricSignal):
            samples = series[(policy.target.resource_id, objective.name)]
        elif isinstance(signal, LogsSignal):
            async with limiter:
                with _reading(f"{policy.name}/{objective.name} from Log Analytics"):
                    samples = await logs.history(policy.target, objective, start, end)
        elif isinstance(signal, PrometheusSignal) and isinstance(
            prometheus := registry.signal("prometheus"), PrometheusSource
        ):
            async with limiter:
                with _reading(f"{policy.name}/{objective.name} from Prometheus"):
                    samples = await prometheus.history(policy.target, objective, start, end)
        else:
            log.warning(
                "no history for this signal: record it",
                policy=policy.name,
                objective=objective.name,
                signal=signal.type,
            )
            return
        if not any(sample.value is not None for sample in samples):
            log.warning(
                "no values in the range: check the resource ID, region and signal",
                policy=policy.name,
                objective=objective.name,
            )
        for sample in samples:
            history.add(policy.name, objective.name, sample.ts, sample.value)

    try:
        async with anyio.create_task_group() as tg:
            for policy in policies:
                tg.start_soon(size, policy)
                for objective in policy.objectives:
                    tg.start_soon(values, policy, objective)
    except* HistoryUnavailable as failed:  # the first to fail says what; the rest stop
        raise failed.exceptions[0] from failed.exceptions[0].__cause__
    return history


async def record(
    clients: AzureClients,
    clock: Clock,
    policies: Sequence[Policy],
    duration: timedelta,
    interval: timedelta,
    out: RecordingWriter | None = None,
    on_pass: Callable[[int, History, datetime, datetime], None] | None = None,
) -> History:
    """Observe every objective each ``interval`` for ``duration``, keeping every sample,
    and writing each pass's to ``out`` as it goes when given; ``on_pass`` hears of each
    pass (its number, the history so far, now, the end), to show progress."""
    history = History()
    registry = default_registry(clients, clock)
    for policy in policies:
        with _reading(f"{policy.name}'s target {policy.target.resource_id}"):
            read = registry.read_state(policy.target.type)
            history.states[policy.name] = await read(policy.target)
        if out is not None:
            out.state(policy.name, history.states[policy.name])
    end = clock.now() + duration
    passes = 0
    while True:
        now = clock.now()
        for policy in policies:
            for kind in sorted({o.signal.type for o in policy.objectives}):
                objectives = [o for o in policy.objectives if o.signal.type == kind]
                source = registry.signal(kind)
                seen = await source.observe(policy.target, objectives, now)
                for name, observation in seen.items():
                    for sample in observation.samples:
                        history.add(policy.name, name, sample.ts, sample.value)
                        if out is not None:
                            out.value(policy.name, name, sample.ts, sample.value)
        if out is not None:
            out.flush()
        passes += 1
        if on_pass is not None:
            on_pass(passes, history, now, end)
        if now + interval > end:
            return history
        await clock.sleep(interval.total_seconds())
