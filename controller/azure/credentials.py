"""Credentials: Azure's default chain (managed identity in production) or the emulator's.

The emulator accepts any bearer token, but the real SDK authentication policy still
runs and still asks this credential for a token with the real scope, so the request
path is the production one.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Literal

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncTokenCredential

EMULATOR_TOKEN = "remediator-emulator-token"


class EmulatorCredential:
    """A token for the local emulator; never valid against Azure."""

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(EMULATOR_TOKEN, int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(EMULATOR_TOKEN, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> EmulatorCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        return None


def make_credential(
    kind: Literal["default", "managedIdentity", "emulator"], client_id: str | None = None
) -> AsyncTokenCredential:
    """``default`` = DefaultAzureCredential (managed identity, workload identity, CLI …);
    ``managedIdentity`` = the platform's identity endpoint only (a sidecar's usual case)."""
    if kind == "emulator":
        return EmulatorCredential()
    # azure-identity (~15 MiB with its MSAL dependencies) only for a credential that needs it
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if kind == "managedIdentity":
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)
