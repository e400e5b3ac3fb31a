"""One leader elector in a process of its own, for the tests that pause a replica.

``python -m tests.replica CONNECTION_STRING CONTAINER IDENTITY`` runs a
:class:`~controller.lease.LeaderElector` on Azurite and prints ``leader`` or ``standby``
every 50 ms, so a test that SIGSTOPs and SIGCONTs it knows what it believes as soon as it
runs again.
"""

from __future__ import annotations

import sys

import anyio
from azure.storage.blob.aio import ContainerClient

from controller.lease import LeaderElector, LeaseTiming

TIMING = LeaseTiming(duration=15, renew_deadline=10, retry_period=0.5)  # Azurite: 15 s at least


async def main(connection_string: str, container: str, identity: str) -> None:
    async with ContainerClient.from_connection_string(
        connection_string, container, retry_total=0
    ) as client:
        elector = LeaderElector(client, "leader", identity, TIMING)
        async with anyio.create_task_group() as tg:
            tg.start_soon(elector.run)
            while True:
                print(elector.status(), flush=True)
                await anyio.sleep(0.05)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
