"""Retrying Azure calls: tenacity around the SDK, on the controller's clock.

Reads are retried on throttling, server errors and connection failures. Writes are
retried only when the service said it did not act — 429 with ``Retry-After``, or 409
``RetryableErrorDueToAnotherOperation`` (busy, not failed) — because a write that timed
out may have landed. ``Retry-After`` is honoured up to a cap; past
the last attempt the error goes back to the loop, whose backoff takes over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from controller.clock import Clock

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0


def _retryable_read(exc: BaseException) -> bool:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in RETRYABLE_STATUS


BUSY_CODES = frozenset({"RetryableErrorDueToAnotherOperation", "AnotherOperationInProgress"})


def is_busy(exc: BaseException) -> bool:
    """The write did not run because of someone else: 409 "another operation is in
    progress", or 412 when the resource kept changing under a conditional write."""
    if not isinstance(exc, HttpResponseError):
        return False
    if exc.status_code == 412:
        return True
    code = exc.error.code if exc.error else None
    return exc.status_code == 409 and code in BUSY_CODES


def _retryable_write(exc: BaseException) -> bool:
    # a 412 is not retried as is: the caller re-reads and recomputes the write
    if is_busy(exc) and getattr(exc, "status_code", None) == 409:
        return True
    return (
        isinstance(exc, HttpResponseError)
        and exc.status_code == 429
        and _retry_after(exc) is not None
    )


def _retry_after(exc: BaseException) -> float | None:
    """The wait the service asked for: ``Retry-After`` seconds, or Resource Graph's
    ``x-ms-user-quota-resets-after`` (``hh:mm:ss``) on a throttled query."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        if raw is not None:
            return float(raw)
    except ValueError:
        return None
    return hh_mm_ss(headers.get("x-ms-user-quota-resets-after"))


def hh_mm_ss(text: str | None) -> float | None:
    """Seconds in Resource Graph's ``hh:mm:ss`` (None when absent or malformed)."""
    if not text:
        return None
    try:
        hours, minutes, seconds = (float(part) for part in str(text).split(":"))
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    hinted = _retry_after(exc) if exc else None
    if hinted is not None:
        return min(hinted, MAX_RETRY_AFTER)
    return float(min(2 ** (state.attempt_number - 1), 8))


async def call(
    clock: Clock,
    operation: Callable[[], Awaitable[T]],
    *,
    write: bool = False,
    attempts: int = 3,
) -> T:
    """Run ``operation`` with the read or write retry rules."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=_wait,
        retry=retry_if_exception(_retryable_write if write else _retryable_read),
        sleep=clock.sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await operation()
    raise AssertionError("tenacity either returns or raises")


def describe(exc: BaseException) -> str:
    """A failed call in a few words for an observation or an audit line (no secrets: the
    SDK's error text carries codes and messages, never tokens)."""
    if isinstance(exc, HttpResponseError):
        code = exc.error.code if exc.error else None
        return f"HTTP {exc.status_code} {code or ''}".strip()
    return f"{type(exc).__name__}: {exc}"[:300]
