"""Escalation to a human: a JSON POST to a webhook, in the background, retried.

Teams and Slack incoming webhooks and Azure Monitor action groups all take a JSON POST.
Escalations are queued and sent by a task of their own, so a slow or failing webhook
never blocks the reconcile loop; each is retried with jittered exponential backoff and,
if it still cannot be delivered, logged (the audit line and the metric were written
before it was queued, so nothing is lost). The URL often carries a secret: it is never
logged.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = structlog.get_logger("remediator.escalation")

QUEUE = 100  # escalations waiting; beyond that the oldest news is the audit line alone


class WebhookRejected(Exception):
    """The webhook answered with an error status, or a redirect (never followed)."""


class Escalator:
    """Queues escalations and delivers them to one webhook."""

    def __init__(
        self, url: str, *, attempts: int = 5, wait_max: float = 60.0, timeout: float = 10.0
    ) -> None:
        self._url = url
        self._attempts = attempts
        self._wait_max = wait_max
        self._timeout = timeout
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](QUEUE)
        self._send: MemoryObjectSendStream[dict[str, Any]] = send
        self._receive: MemoryObjectReceiveStream[dict[str, Any]] = receive
        self.queued = 0
        self.delivered = 0
        self.dropped = 0  # the queue was full, or delivery failed every attempt

    def idle(self) -> bool:
        """Nothing queued or in flight."""
        return self.delivered + self.dropped >= self.queued

    def escalate(self, payload: dict[str, Any]) -> None:
        """Queue one escalation; never waits."""
        try:
            self._send.send_nowait(payload)
            self.queued += 1
        except anyio.WouldBlock:
            self.dropped += 1
            log.warning("escalation queue full; the audit line stands alone")

    async def run(self) -> None:
        """Deliver queued escalations until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async for payload in self._receive:
                await self._deliver(session, payload)

    async def _deliver(self, session: aiohttp.ClientSession, payload: dict[str, Any]) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=min(1.0, self._wait_max), max=self._wait_max),
            retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError, WebhookRejected)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    # a redirect could send the payload (and the URL's secret) anywhere
                    async with session.post(
                        self._url, json=payload, allow_redirects=False
                    ) as response:
                        if response.status >= 300:
                            raise WebhookRejected(f"HTTP {response.status}")
            self.delivered += 1
        except (aiohttp.ClientError, TimeoutError, WebhookRejected) as exc:
            self.dropped += 1
            log.warning(
                "escalation not delivered", error=type(exc).__name__, attempts=self._attempts
            )
