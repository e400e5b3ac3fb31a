"""The pure workload model: arithmetic, history, leak and restart."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.emulator.workload import (
    AppConfig,
    AppModel,
    Container,
    Demand,
    consumption_pair_error,
)

from .support import START


def _config(replicas: int, cpu: float = 0.5, memory: str = "1Gi") -> AppConfig:
    return AppConfig(replicas, 10, (Container("api", "img:1", cpu, memory),))


def _model(demand: float = 0.8, leak: float = 0.0, wobble: float = 0.0) -> AppModel:
    return AppModel("app", START, _config(1), Demand(demand, 300, leak), wobble=wobble)


def test_cpu_is_capped_and_falls_with_replicas() -> None:
    model = _model(0.8)
    assert model.sample(START).cpu_percent == 100.0  # 160 % demand, capped
    model.apply_config(START + timedelta(minutes=5), _config(2))
    model.apply_config(START + timedelta(minutes=10), _config(3))
    assert model.sample(START + timedelta(minutes=5)).cpu_percent == pytest.approx(80.0)
    assert model.sample(START + timedelta(minutes=10)).cpu_percent == pytest.approx(53.333, 1e-3)
    # usage: the 0.8 cores actually used, shared by 2 replicas
    assert model.sample(START + timedelta(minutes=6)).usage_nano_cores == pytest.approx(0.4e9)
    # one replica could only use 0.5 cores
    assert model.sample(START).usage_nano_cores == pytest.approx(0.5e9)


def test_history_is_kept_for_past_minutes() -> None:
    model = _model(0.8)
    model.apply_config(START + timedelta(minutes=5), _config(2))
    assert model.sample(START + timedelta(minutes=4)).replicas == 1
    assert model.sample(START + timedelta(minutes=4)).cpu_percent == 100.0
    assert model.sample(START - timedelta(minutes=30)).replicas == 1  # before start: initial


def test_replicas_are_min_clamped_into_one_to_max() -> None:
    assert AppConfig(0, 10, ()).replicas == 1
    assert AppConfig(12, 10, ()).replicas == 10


def test_leak_grows_and_restart_clears_it() -> None:
    model = _model(0.2, leak=40)
    assert model.sample(START).memory_percent == pytest.approx(300 / 1024 * 100)
    ten = START + timedelta(minutes=10)
    assert model.sample(ten).working_set_bytes == pytest.approx((300 + 400) * 1024 * 1024)
    model.record_restart(ten + timedelta(seconds=30))
    assert model.sample(ten).memory_percent == pytest.approx(700 / 1024 * 100)  # history
    assert model.sample(ten + timedelta(minutes=1)).memory_percent == pytest.approx(
        (300 + 20) / 1024 * 100
    )
    assert model.sample(ten).restarts == 1
    # capped at the memory limit
    assert model.sample(START + timedelta(hours=2)).memory_percent == pytest.approx(100.0)


def test_leak_starts_with_the_timeline() -> None:
    model = AppModel(
        "app",
        START,
        _config(1),
        Demand(0.2, 300, 0),
        [(START + timedelta(minutes=2), {"leak_mib_per_minute": 40.0})],
        wobble=0.0,
    )
    assert model.sample(START + timedelta(minutes=2)).working_set_bytes == 300 * 1024 * 1024
    assert model.sample(START + timedelta(minutes=5)).working_set_bytes == 420 * 1024 * 1024


def test_wobble_is_small_and_deterministic() -> None:
    a, b = _model(0.3, wobble=0.01), _model(0.3, wobble=0.01)
    values = [a.sample(START + timedelta(minutes=m)).cpu_percent for m in range(30)]
    assert values == [b.sample(START + timedelta(minutes=m)).cpu_percent for m in range(30)]
    assert all(59.4 <= v <= 60.6 for v in values)
    assert len(set(values)) > 1


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [(0.5, "1Gi", True), (1.5, "3Gi", True), (0.25, "0.5Gi", True), (4.0, "8Gi", True),
     (0.3, "0.6Gi", False), (1.0, "1Gi", False), (4.5, "9Gi", False), (1.0, "2G", False)],
)  # fmt: skip
def test_consumption_pairs(cpu: float, memory: str, ok: bool) -> None:
    assert (consumption_pair_error(cpu, memory) is None) is ok
