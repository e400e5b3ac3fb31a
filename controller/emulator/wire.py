"""Small helpers for answering the way Azure does (error envelopes, JSON bodies)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("controller.emulator")

# api-versions the pinned SDKs send; others are accepted and logged once.
KNOWN_API_VERSIONS = frozenset(
    {"2026-07-01", "2025-07-01", "2025-01-01", "2024-03-01", "2024-02-01"}
    | {"2021-03-01", "2022-10-01", "2024-04-01"}  # Resource Graph
)
_seen_unknown: set[str] = set()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The ARM error envelope ``{"error": {"code", "message"}}`` (the SDK reads .error.code)."""
    all_headers = {"x-ms-error-code": code, **(headers or {})}
    return json_response({"error": {"code": code, "message": message}}, status, all_headers)


def check_auth(request: web.Request) -> web.Response | None:
    """401 unless a bearer token is present (any token: there is no identity to check)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or not a Bearer token.",
            {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/"'},
        )
    return None


def check_api_version(request: web.Request) -> web.Response | None:
    """400 without ``api-version``; unknown values are served anyway, and logged once."""
    version = request.query.get("api-version")
    if not version:
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in KNOWN_API_VERSIONS and version not in _seen_unknown:
        _seen_unknown.add(version)
        log.info("serving unrecognised api-version %s (%s)", version, request.path)
    return None


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; ``None`` when empty. Raises ValueError on bad JSON."""
    raw = await request.read()
    if not raw.strip():
        return None
    return json.loads(raw)
