"""Prometheus and HTTP-probe signals: their policy models, bucketed history, answer parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controller.model import Quality
from controller.policy.probe_signals import HttpProbeSignal, PrometheusSignal
from controller.policy.schema import Objective
from controller.signals.history import History, Reading, bucket, retention
from controller.signals.prometheus import interpret

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_prometheus_signal_defaults_and_camel_case() -> None:
    signal = PrometheusSignal.model_validate(
        {"type": "prometheus", "query": 'max(app_errors_ratio{app="api"})'}
    )
    assert signal.server is None  # the controller's default
    assert (signal.grain, signal.timeout) == (timedelta(minutes=1), timedelta(seconds=10))
    full = PrometheusSignal.model_validate(
        {
            "type": "prometheus",
            "query": "up",
            "server": "https://prom.example.com:9090/",
            "grain": "30s",
            "timeout": "2s",
        }
    )
    assert (full.server, full.grain, full.timeout) == (
        "https://prom.example.com:9090/",
        timedelta(seconds=30),
        timedelta(seconds=2),
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"query": ""}, "at least 1 character"),
        ({"query": "   "}, "must not be blank"),
        ({"query": None}, "valid string"),
        ({"server": "prom:9090"}, "http:// or https://"),
        ({"server": "ftp://prom"}, "http:// or https://"),
        ({"server": "http://prom.internal:9090"}, "plain http is allowed only on loopback"),
        ({"server": "https://169.254.169.254"}, "may be the instance metadata service"),
        ({"server": "http://[fd00:ec2::254]"}, "may be the instance metadata service"),
        ({"grain": "5s"}, "at least 10s"),
        ({"grain": "0s"}, "longer than zero"),
        ({"timeout": "2m"}, "must not be longer than the grain"),
        ({"type": "azureMonitor"}, "'prometheus'"),
        ({"step": "1m"}, "Extra inputs are not permitted"),
    ],
)
def test_prometheus_signal_rejects(changes: dict[str, Any], why: str) -> None:
    data = {"type": "prometheus", "query": "up", **changes}
    with pytest.raises(ValidationError, match=why):
        PrometheusSignal.model_validate(data)


def test_http_probe_signal_defaults_and_camel_case() -> None:
    signal = HttpProbeSignal.model_validate({"type": "httpProbe", "url": "http://api/healthz"})
    assert signal.expect_status == [200]
    assert signal.measure == "consecutiveFailures"
    assert (signal.grain, signal.timeout) == (timedelta(minutes=1), timedelta(seconds=5))
    custom = HttpProbeSignal.model_validate(
        {
            "type": "httpProbe",
            "url": "https://api.example.com/healthz?deep=1",
            "expectStatus": [200, 204],
            "measure": "latencySeconds",
            "grain": "10s",
            "timeout": "500ms",
        }
    )
    assert custom.expect_status == [200, 204]
    assert custom.timeout == timedelta(milliseconds=500)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"url": "api/healthz"}, "http:// or https://"),
        ({"url": "http:///healthz"}, "with a host"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "instance metadata service"),
        ({"url": "https://[fe80::1]/healthz"}, "instance metadata service"),
        ({"expectStatus": []}, "at least 1 item"),
        ({"expectStatus": [200, 700]}, r"status codes \(100-599\), got \[700\]"),
        ({"measure": "uptime"}, "consecutiveFailures"),
        ({"grain": "1s"}, "at least 10s"),
        ({"timeout": "90s"}, "must not be longer than the grain"),
        ({"expect_status": [200], "retries": 3}, "Extra inputs are not permitted"),
    ],
)
def test_http_probe_signal_rejects(changes: dict[str, Any], why: str) -> None:
    data = {"type": "httpProbe", "url": "http://api/healthz", **changes}
    with pytest.raises(ValidationError, match=why):
        HttpProbeSignal.model_validate(data)


def goal(grain: str = "1m", for_: str = "3m") -> Objective:
    return Objective.model_validate(
        {
            "name": "errors",
            "signal": {"type": "prometheus", "query": "up", "grain": grain},
            "comparison": "<",
            "threshold": 1,
            "for": for_,
        }
    )


def test_buckets_are_epoch_aligned_floors() -> None:
    minute = timedelta(minutes=1)
    assert bucket(T0 + timedelta(seconds=59.9), minute) == T0
    assert bucket(T0 + timedelta(seconds=60), minute) == T0 + minute
    assert bucket(T0 + timedelta(seconds=25), timedelta(seconds=20)) == T0 + timedelta(seconds=20)


def test_history_keeps_the_newest_value_per_bucket_and_errors_are_gaps() -> None:
    history, obj = History(), goal()

    def at(seconds: float, reading: Reading) -> list[tuple[float, float | None]]:
        now = T0 + timedelta(seconds=seconds)
        observed = history.observe(obj, "app", "q", reading, now, now)
        return [((s.ts - T0).total_seconds(), s.value) for s in observed.samples]

    assert at(5, Reading(1.0)) == [(0, 1.0)]
    assert at(50, Reading(2.0)) == [(0, 2.0)]  # same minute: the newest wins
    assert at(65, Reading.error("timeout")) == [(0, 2.0)]  # nothing erased, no sample
    assert at(130, Reading.missing("no series")) == [(0, 2.0)]
    assert at(185, Reading(3.0)) == [(0, 2.0), (180, 3.0)]  # minutes 1 and 2 are gaps


def test_history_is_bounded_by_the_retention() -> None:
    """``for`` + staleness + 2 grains: 3m + 3m + 2m here; older buckets are dropped."""
    history, obj = History(), goal()
    assert retention(obj) == timedelta(minutes=8)
    for minute in range(30):
        now = T0 + timedelta(minutes=minute)
        observed = history.observe(obj, "app", "q", Reading(float(minute)), now, now)
    assert [s.value for s in observed.samples] == [float(m) for m in range(21, 30)]


def test_history_is_per_target_and_objective_and_a_new_grain_starts_afresh() -> None:
    history = History()
    history.observe(goal(), "app-a", "q", Reading(1.0), T0, T0)
    other = history.observe(goal(), "app-b", "q", Reading(2.0), T0, T0)
    assert [s.value for s in other.samples] == [2.0]
    regrained = history.observe(goal(grain="30s"), "app-a", "q", Reading(3.0), T0, T0)
    assert [s.value for s in regrained.samples] == [3.0]


def answer(result_type: str, result: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "quality", "value", "why"),
    [
        (200, answer("scalar", [1.0, "4.5"]), Quality.GOOD, 4.5, None),
        (200, answer("vector", [{"metric": {}, "value": [1.0, "0.25"]}]), Quality.GOOD, 0.25, None),
        (200, answer("vector", []), Quality.MISSING, None, "no series"),
        (200, answer("scalar", [1.0, "NaN"]), Quality.MISSING, None, "NaN"),
        (
            200,
            answer("vector", [{"metric": {}, "value": [1, "+Inf"]}]),
            Quality.MISSING,
            None,
            "+Inf",
        ),
        (
            200,
            answer("vector", [{"metric": {"i": str(n)}, "value": [1, "1"]} for n in range(5)]),
            Quality.ERROR,
            None,
            '5 series ({i="0"}, {i="1"}, {i="2"}, …)',
        ),
        (
            200,
            answer("matrix", [{"metric": {}, "values": [[1, "1"]]}]),
            Quality.ERROR,
            None,
            "returned a matrix",
        ),
        (200, answer("scalar", [1.0, "many"]), Quality.ERROR, None, "malformed Prometheus value"),
        (
            200,
            answer("vector", [{"metric": {}}]),
            Quality.ERROR,
            None,
            "malformed Prometheus answer",
        ),
        (
            422,
            b'{"status":"error","errorType":"execution","error":"query timed out"}',
            Quality.ERROR,
            None,
            "HTTP 422, execution): query timed out",
        ),
        (
            502,
            b"<html>Bad Gateway</html>",
            Quality.ERROR,
            None,
            "HTTP 502, not a Prometheus API answer",
        ),
    ],
)
def test_interpreting_query_answers(
    status: int, body: bytes, quality: Quality, value: float | None, why: str | None
) -> None:
    """Each row: one /api/v1/query answer and the reading it must give."""
    reading = interpret(status, body)
    assert (reading.quality, reading.value) == (quality, value)
    if why is None:
        assert reading.reason is None
    else:
        assert reading.reason is not None and why in reading.reason
