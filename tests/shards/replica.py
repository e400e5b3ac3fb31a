"""One replica's partition owner as a process of its own, for the shard tests.

    python -m tests.shards.replica CONNECTION_STRING CONTAINER PARTITIONS IDENTITY [PAUSE]

Prints, four times a second, one JSON line: the monotonic time and the partitions this
replica may act for. SIGKILL it to see what a dead replica leaves behind. With PAUSE (a
file path), once that file exists the process stops itself (SIGSTOP) as the answer to
its next partition renewal arrives, and deletes the file: a replica paused with a
renewal in flight, until the test sends SIGCONT.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from azure.core.pipeline import PipelineResponse
from azure.storage.blob.aio import ContainerClient

from controller.lease import LeaseTiming
from controller.shards import PartitionOwner


def pause_on_renewal(pause: Path) -> Callable[[PipelineResponse], None]:  # type: ignore[type-arg]
    def hook(response: PipelineResponse) -> None:  # type: ignore[type-arg]
        request = response.http_request
        renewal = request.headers.get("x-ms-lease-action") == "renew"
        if renewal and "/shards/0" in request.url and pause.exists():
            pause.unlink()
            os.kill(os.getpid(), signal.SIGSTOP)  # the answer waits until SIGCONT

    return hook


async def main(
    connection: str, container_name: str, partitions: int, identity: str, pause: Path | None
) -> None:
    hook = pause_on_renewal(pause) if pause is not None else None
    async with ContainerClient.from_connection_string(
        connection, container_name, raw_response_hook=hook
    ) as container:
        owner = PartitionOwner(container, "shards", partitions, identity, LeaseTiming())
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner.run)
            while True:
                print(json.dumps({"t": time.monotonic(), "owned": owner.owned()}), flush=True)
                await anyio.sleep(0.25)


if __name__ == "__main__":
    connection, container_name, partitions, identity = sys.argv[1:5]
    pause = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    anyio.run(main, connection, container_name, int(partitions), identity, pause)
