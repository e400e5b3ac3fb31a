"""The audit key: from the environment (``REMEDIATOR_AUDIT_KEY``) or a file.

In Azure the key is a Key Vault secret: referenced by a Container Apps secret and
exposed as the environment variable, or mounted as a file (the Key Vault CSI driver, a
secret volume) named by ``auditKeyFile``. The key is the text's UTF-8 bytes, surrounding
whitespace removed; ``openssl rand -hex 32`` makes a good one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from controller.audit.log import AuditKeyError

MIN_KEY_BYTES = 16
KEY_ENV = "REMEDIATOR_AUDIT_KEY"
KEY_FILE_ENV = "REMEDIATOR_AUDIT_KEY_FILE"


def load_key(value: str | None, file: Path | None) -> bytes | None:
    """The key's bytes, or None for an unkeyed log. Raises AuditKeyError."""
    if value is not None and file is not None:
        raise AuditKeyError("give the audit key once: auditKey or auditKeyFile, not both")
    where = "auditKey"
    if file is not None:
        where = str(file)
        try:
            value = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditKeyError(f"{file}: cannot read the audit key: {exc}") from None
    if value is None:
        return None
    key = value.strip().encode()
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"{where}: the audit key is {len(key)} bytes; at least {MIN_KEY_BYTES} "
            "(openssl rand -hex 32)"
        )
    return key


def key_from_environment(
    file: Path | None = None, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """For commands given a log file rather than settings: ``--key-file``, else the
    environment's key or key file."""
    environ = os.environ if environ is None else environ
    if file is None and environ.get(KEY_FILE_ENV):
        file = Path(environ[KEY_FILE_ENV])
    value = environ.get(KEY_ENV) if file is None else None
    return load_key(value or None, file)
