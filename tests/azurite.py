"""Azurite, the Azure Storage emulator, started on loopback for the tests that need blobs.

Found as ``$AZURITE_BLOB``, ``.tools/node_modules/.bin/azurite-blob`` (what ``make test``
and CI install) or on ``PATH``; tests that need it are skipped, saying why, without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's published development key, not a secret


def azurite_binary() -> str | None:
    candidates = [
        os.environ.get("AZURITE_BLOB"),
        str(Path(__file__).parents[1] / ".tools/node_modules/.bin/azurite-blob"),
        shutil.which("azurite-blob"),
    ]
    return next((c for c in candidates if c and Path(c).exists()), None)


@contextmanager
def azurite(location: Path) -> Iterator[str]:
    """Run azurite-blob on a free loopback port; yield its connection string."""
    binary = azurite_binary()
    assert binary is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("azurite did not start") from None
                time.sleep(0.05)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
