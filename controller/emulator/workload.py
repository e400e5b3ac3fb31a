"""The pure workload model: what a Container App's metrics would read at any minute.

Nothing here does I/O or reads a clock. Every configuration change and restart is
stored with its scenario timestamp, and every metric is computed from whatever was in
effect at the minute asked about, so a window queried after a change still reports
the values it reported before the change (as Azure Monitor would).
"""

from __future__ import annotations

import bisect
import itertools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MIB = 1024 * 1024
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Gi|Mi)$")
_CPU_STEPS = {q / 4 for q in range(1, 17)}  # Consumption plan: 0.25 .. 4.0 in 0.25 steps


def parse_memory_mib(text: str) -> float:
    """``"1.5Gi"`` -> 1536.0; raise ValueError on anything else."""
    match = _MEMORY.match(text.strip())
    if match is None:
        raise ValueError(f"bad memory quantity {text!r} (expected e.g. '1Gi', '512Mi')")
    amount = float(match.group(1))
    return amount * 1024 if match.group(2) == "Gi" else amount


def format_memory(gib: float) -> str:
    """1.5 -> ``"1.5Gi"``, 1.0 -> ``"1Gi"`` (the spelling Azure uses)."""
    return f"{gib:g}Gi"


def consumption_pair_error(cpu: float, memory: str) -> str | None:
    """Why (cpu, memory) is not a valid Consumption-plan pair, or None if it is."""
    if cpu not in _CPU_STEPS:
        return f"cpu {cpu} is not one of 0.25, 0.5, ... 4.0"
    try:
        mib = parse_memory_mib(memory)
    except ValueError as exc:
        return str(exc)
    if abs(mib - cpu * 2 * 1024) > 1e-6:
        return f"memory {memory} must be {format_memory(cpu * 2)} for cpu {cpu}"
    return None


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    cpu: float
    memory: str
    extra: str = "{}"  # every other field as sent (env, probes, volumeMounts …), JSON

    @property
    def memory_mib(self) -> float:
        return parse_memory_mib(self.memory)


@dataclass(frozen=True)
class AppConfig:
    """The part of a Container App's configuration that drives its metrics."""

    min_replicas: int
    max_replicas: int
    containers: tuple[Container, ...]

    @property
    def replicas(self) -> int:
        """Replicas running: minReplicas clamped into [1, maxReplicas] (no autoscaler here)."""
        return max(1, min(self.min_replicas, self.max_replicas))

    @property
    def cpu_per_replica(self) -> float:
        return sum(c.cpu for c in self.containers)

    @property
    def memory_mib_per_replica(self) -> float:
        return sum(c.memory_mib for c in self.containers)


@dataclass(frozen=True)
class Demand:
    """What the workload asks for, independent of how it is provisioned."""

    cpu_demand_cores: float
    base_memory_mib: float
    leak_mib_per_minute: float
    cpu_demand_per_replica: float = 0.0  # e.g. a hot loop in every replica
    requests_per_minute: float = 600.0
    hung: float = 0.0  # 1: the app stops answering (a deadlock) until it is restarted


@dataclass(frozen=True)
class Sample:
    """Every metric for one resource and one minute (per-replica values unless noted)."""

    replicas: int
    cpu_percent: float
    usage_nano_cores: float
    memory_percent: float
    working_set_bytes: float
    restarts: int  # restarts recorded inside this minute (for RestartCount)


class AppModel:
    """One Container App: its configuration history, demand timeline and restarts."""

    def __init__(
        self,
        key: str,
        start: datetime,
        config: AppConfig,
        demand: Demand,
        demand_changes: list[tuple[datetime, dict[str, float]]] | None = None,
        wobble: float = 0.005,
    ) -> None:
        self.key = key
        self.start = start
        self.wobble = wobble
        self._config_times: list[datetime] = [start]
        self._configs: list[AppConfig] = [config]
        self._demand_times: list[datetime] = [start]
        self._demands: list[Demand] = [demand]
        for at, fields in sorted(demand_changes or [], key=lambda change: change[0]):
            self._demand_times.append(at)
            self._demands.append(replace(self._demands[-1], **fields))
        self.restarts: list[datetime] = []

    # -- mutations (each stamped with scenario time) -------------------------------------

    def apply_config(self, at: datetime, config: AppConfig) -> None:
        """Record that ``config`` is in effect from ``at`` on."""
        index = bisect.bisect_right(self._config_times, at)
        self._config_times.insert(index, at)
        self._configs.insert(index, config)

    def record_restart(self, at: datetime) -> None:
        bisect.insort(self.restarts, at)

    # -- queries -------------------------------------------------------------------------

    @property
    def current(self) -> AppConfig:
        """The newest configuration recorded (what ARM reports)."""
        return self._configs[-1]

    def config_at(self, at: datetime) -> AppConfig:
        index = bisect.bisect_right(self._config_times, max(at, self.start)) - 1
        return self._configs[max(index, 0)]

    def demand_at(self, at: datetime) -> Demand:
        index = bisect.bisect_right(self._demand_times, max(at, self.start)) - 1
        return self._demands[max(index, 0)]

    def hung(self, at: datetime) -> bool:
        """Whether the app is wedged at ``at``: it hung (the demand says so) and has not
        been restarted since it did."""
        at = max(at, self.start)
        if self.demand_at(at).hung <= 0:
            return False
        began = self.start  # when the current hung stretch began
        for i, change_at in enumerate(self._demand_times):
            if change_at > at:
                break
            was_hung = i > 0 and self._demands[i - 1].hung > 0
            if self._demands[i].hung > 0 and not was_hung:
                began = change_at
        return not any(began <= r <= at for r in self.restarts)

    def restarts_before(self, at: datetime) -> int:
        return bisect.bisect_right(self.restarts, at)

    def leaked_mib(self, at: datetime) -> float:
        """Memory leaked since the last restart (or scenario start) up to ``at``."""
        at = max(at, self.start)
        count = bisect.bisect_right(self.restarts, at)
        since = max(self.restarts[count - 1], self.start) if count else self.start
        total = 0.0
        for i, (change_at, demand) in enumerate(
            zip(self._demand_times, self._demands, strict=True)
        ):
            seg_start = max(change_at, since)
            seg_end = self._demand_times[i + 1] if i + 1 < len(self._demand_times) else at
            seg_end = min(seg_end, at)
            if seg_end > seg_start:
                total += demand.leak_mib_per_minute * (seg_end - seg_start).total_seconds() / 60
        return total

    def _jitter(self, minute: datetime, family: str) -> float:
        """A deterministic factor in [1 - wobble, 1 + wobble] for this minute."""
        if not self.wobble:
            return 1.0
        seed = f"{self.key}|{family}|{int(minute.timestamp()) // 60}".encode()
        unit = (zlib.crc32(seed) % 20001) / 10000 - 1.0  # -1.0 .. 1.0
        return 1.0 + self.wobble * unit

    def _average_cpu_used(
        self, minute: datetime, replicas: int, capacity: float, share: float = 1.0
    ) -> float:
        """Cores used, averaged over the minute: demand may change inside it (a metric's
        one-minute Average smooths what happened within the minute). ``share``: the part
        of the app's traffic these replicas serve."""
        end = minute + timedelta(minutes=1)
        cuts = [minute, *(t for t in self._demand_times if minute < t < end), end]
        total = 0.0
        for start, stop in itertools.pairwise(cuts):
            demand = self.demand_at(start)
            wanted = demand.cpu_demand_cores * share + demand.cpu_demand_per_replica * replicas
            total += min(wanted, capacity) * (stop - start).total_seconds()
        return total / 60.0

    def sample(
        self,
        minute: datetime,
        serving: Sequence[tuple[AppConfig, int]] | None = None,
        running: int | None = None,
    ) -> Sample:
        """All metrics for the minute starting at ``minute`` (config and demand at its start).

        ``serving``: the revisions taking traffic, each with its own template and its share
        in percent (default: the app's configuration at that minute, all of it); the load
        splits between them as the traffic does. ``running``: every active revision's
        replicas, those taking no traffic too (default: the serving ones')."""
        if not serving:
            serving = [(self.config_at(minute), 100)]
        demand = self.demand_at(minute)
        total_weight = sum(weight for _, weight in serving) or 1
        used = capacity = 0.0
        replicas = 0
        for config, weight in serving:
            own = config.replicas * config.cpu_per_replica
            cores = self._average_cpu_used(minute, config.replicas, own, weight / total_weight)
            used += min(cores * self._jitter(minute, "cpu"), own)
            capacity += own
            replicas += config.replicas
        cpu_percent = min(100.0, used / capacity * 100) if capacity else 0.0
        heaviest = max(serving, key=lambda item: item[1])[0]
        limit = heaviest.memory_mib_per_replica
        mem = demand.base_memory_mib + self.leaked_mib(minute)
        mem = min(mem * self._jitter(minute, "mem"), limit)
        end = minute + timedelta(minutes=1)
        restarts = bisect.bisect_left(self.restarts, end) - bisect.bisect_left(
            self.restarts, minute
        )
        running = running if running is not None else replicas
        return Sample(
            replicas=running,
            cpu_percent=cpu_percent,  # of the replicas serving: idle ones would hide a hot one
            usage_nano_cores=used / running * 1e9 if running else 0.0,  # its Total: cores used
            memory_percent=mem / limit * 100 if limit else 0.0,
            working_set_bytes=mem * MIB,
            restarts=restarts,
        )
