"""Signals that are not Azure Monitor metrics: a PromQL query and an HTTP probe.

Both read one value per reconcile pass; the signal source buckets those values at
``grain`` so the same sustained-window evaluation applies. Pure models, no I/O::

    signal: {type: prometheus, query: 'max(app_errors_ratio{app="api"})', grain: 1m}
    signal: {type: httpProbe, url: https://api.example.com/healthz, measure: consecutiveFailures}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from controller.durations import format_duration
from controller.policy.base import PositiveDuration, Strict
from controller.policy.urls import url_problem

MIN_GRAIN = timedelta(seconds=10)  # finer buckets than this only measure the loop's jitter


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value


def _probe_url(value: str) -> str:
    """A probe sends nothing and only times the answer: plain http may be what the
    workload serves; the metadata service is never probed."""
    problem = url_problem(_http_url(value), cleartext=None)
    if problem:
        raise ValueError(problem)
    return value


def _server_url(value: str) -> str:
    """The numbers read here decide actions: they come over TLS unless on loopback."""
    problem = url_problem(_http_url(value))
    if problem:
        raise ValueError(f"{problem}, got {value}")
    return value


def _coarse_enough(grain: timedelta) -> timedelta:
    if grain < MIN_GRAIN:
        raise ValueError(
            f"grain must be at least {format_duration(MIN_GRAIN)}, got {format_duration(grain)}"
        )
    return grain


ProbeUrl = Annotated[str, AfterValidator(_probe_url)]
ServerUrl = Annotated[str, AfterValidator(_server_url)]
Grain = Annotated[PositiveDuration, AfterValidator(_coarse_enough)]


def _timeout_within_grain(timeout: timedelta, grain: timedelta) -> None:
    """A read that may outlast its bucket would smear values across buckets."""
    if timeout > grain:
        raise ValueError(
            f"timeout ({format_duration(timeout)}) must not be longer than the grain "
            f"({format_duration(grain)})"
        )


class PrometheusSignal(Strict):
    """A PromQL instant query that must reduce to one number (``max(...)``, ``sum(...)``)."""

    type: Literal["prometheus"]
    query: str = Field(min_length=1)
    server: ServerUrl | None = None  # base URL; None: the controller's configured default
    grain: Grain = timedelta(minutes=1)
    timeout: PositiveDuration = timedelta(seconds=10)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query must not be blank")
        return query

    @model_validator(mode="after")
    def _timeout_fits(self) -> PrometheusSignal:
        _timeout_within_grain(self.timeout, self.grain)
        return self


ProbeMeasure = Literal["consecutiveFailures", "failureRatio", "latencySeconds"]


class HttpProbeSignal(Strict):
    """A GET of ``url``; a status outside ``expectStatus``, a timeout or no connection fails.

    ``measure`` picks the number reported: failed probes in a row, the share of failed
    probes within each grain bucket, or the latency of a successful probe in seconds.
    """

    type: Literal["httpProbe"]
    url: ProbeUrl
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    timeout: PositiveDuration = timedelta(seconds=5)
    measure: ProbeMeasure = "consecutiveFailures"
    grain: Grain = timedelta(minutes=1)

    @field_validator("expect_status")
    @classmethod
    def _status_codes(cls, codes: list[int]) -> list[int]:
        bad = [c for c in codes if not 100 <= c <= 599]
        if bad:
            raise ValueError(f"expectStatus holds HTTP status codes (100-599), got {bad}")
        return codes

    @model_validator(mode="after")
    def _timeout_fits(self) -> HttpProbeSignal:
        _timeout_within_grain(self.timeout, self.grain)
        return self
