"""Bearer-token authentication of the admin API, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.api.responses import problem_response

# Probes must answer without credentials: kubelets and load balancers carry none.
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
# The console signs people in itself, with a session cookie; the API never accepts that cookie.
_CONSOLE_PREFIX = "/console/"


def bearer_auth(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS or request.path.startswith(_CONSOLE_PREFIX):
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            response = problem_response(
                401, "$", "a valid 'Authorization: Bearer <token>' header is required"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="event-gateway"'
            return response
        return await handler(request)

    return middleware
