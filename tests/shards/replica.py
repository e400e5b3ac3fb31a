"""One replica's partition owner as a process of its own, for the shard tests.

    python -m tests.shards.replica CONNECTION_STRING CONTAINER PARTITIONS IDENTITY

Prints, four times a second, one JSON line: the monotonic time and the partitions this
replica may act for. SIGKILL it to see what a dead replica leaves behind.
"""

from __future__ import annotations

import json
import sys
import time

import anyio
from azure.storage.blob.aio import ContainerClient

from controller.lease import LeaseTiming
from controller.shards import PartitionOwner


async def main(connection: str, container_name: str, partitions: int, identity: str) -> None:
    async with ContainerClient.from_connection_string(connection, container_name) as container:
        owner = PartitionOwner(container, "shards", partitions, identity, LeaseTiming())
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner.run)
            while True:
                print(json.dumps({"t": time.monotonic(), "owned": owner.owned()}), flush=True)
                await anyio.sleep(0.25)


if __name__ == "__main__":
    connection, container_name, partitions, identity = sys.argv[1:5]
    anyio.run(main, connection, container_name, int(partitions), identity)
