"""A managed identity endpoint, as Container Apps and App Service serve one to an app.

The app finds it through ``IDENTITY_ENDPOINT`` and proves itself with the
``IDENTITY_HEADER`` secret, so the controller can use the SDK's own
``ManagedIdentityCredential`` against the emulator. The ``identity-unavailable`` fault
answers as the platform does when no identity is assigned.
"""

from __future__ import annotations

import time

from aiohttp import web

from .wire import json_response
from .world import World

IDENTITY_PATH = "/msi/token"
IDENTITY_HEADER = "remediator-emulator-identity-header"
IDENTITY_TOKEN = "remediator-emulator-managed-identity-token"


def identity_routes(world: World) -> list[web.RouteDef]:
    async def token(request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return json_response({"statusCode": 401, "message": "Unauthorized"}, status=401)
        resource = request.query.get("resource")
        if request.query.get("api-version") != "2019-08-01" or not resource:
            return json_response(
                {"statusCode": 400, "message": "api-version=2019-08-01 and resource are required"},
                status=400,
            )
        if world.faults.active("identity-unavailable", world.now()) is not None:
            return json_response(
                {"statusCode": 400, "message": "No managed identity is assigned to this app."},
                status=400,
            )
        # the SDK caches tokens against wall time, so expiry is wall time too
        expires = int(time.time()) + 3600
        return json_response(
            {
                "access_token": IDENTITY_TOKEN,
                "expires_on": str(expires),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": "00000000-0000-0000-0000-0000000000aa",
            }
        )

    return [web.get(IDENTITY_PATH, token)]
