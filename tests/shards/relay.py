"""A loopback TCP relay to Azurite that the shard tests can make fail: storage that
closes every connection at once (``cut``), or that takes requests and never answers
(``hang``)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
from anyio.abc import TaskStatus
from azure.storage.blob.aio import ContainerClient


class Relay:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cut = False  # connections closed at once: a request gets no answer
        self.hang = False  # bytes swallowed: a request waits for an answer that never comes

    async def serve(self, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if self.cut:
                return
            async with await anyio.connect_tcp("127.0.0.1", self.port) as upstream:

                async def pump(a: anyio.abc.SocketStream, b: anyio.abc.SocketStream) -> None:
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while not self.cut:
                            data = await a.receive()
                            if not self.hang:
                                await b.send(data)
                    tg.cancel_scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump, client, upstream)
                    tg.start_soon(pump, upstream, client)


@contextlib.asynccontextmanager
async def relayed_container(
    storage: str, **client: Any
) -> AsyncIterator[tuple[ContainerClient, Relay]]:
    """A fresh container reached through a relay, without the SDK's own retries."""
    port = int(storage.split("127.0.0.1:")[1].split("/")[0])
    relay = Relay(port)
    async with anyio.create_task_group() as tg:
        relayed_port = await tg.start(relay.serve)
        url = storage.replace(f"127.0.0.1:{port}", f"127.0.0.1:{relayed_port}")
        name = f"shards{random.randrange(10**9)}"
        async with ContainerClient.from_connection_string(
            url, name, retry_total=0, **client
        ) as container:
            yield container, relay
        tg.cancel_scope.cancel()
