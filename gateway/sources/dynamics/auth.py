"""OAuth2 bearer tokens for one Dynamics connection: discovered, fetched once at a time, cached, refreshed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from yarl import URL

from gateway.errors import SourceAuthError, SourceResponseError
from gateway.instances.model import SourceConnection
from gateway.metrics import SourceMetrics
from gateway.sources.dynamics.transport import ELEMENT, Response, Transport

# Microsoft's public sample client registered for Dynamics 365, used for the password grant when the
# connection names no client of its own.
PUBLIC_CLIENT_ID = "51f81489-12ee-4a9e-aaae-a2591f45987d"
_AUTHORIZATION_URI = re.compile(r'authorization_uri="?([^",\s]+)', re.IGNORECASE)
_ACCEPT_JSON = {"Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # on the clock of the OAuthTokens that holds it


def _refresh_margin(expires_in: float) -> float:
    """How long before expiry to refresh: 10% of the lifetime or 60 s, whichever is more, but never more
    than half the lifetime, so that short-lived tokens are still reused."""
    return min(max(0.1 * expires_in, 60.0), 0.5 * expires_in)


def token_endpoint_from_challenge(response: Response) -> str | None:
    """The token endpoint named by a 401's `WWW-Authenticate: Bearer authorization_uri=.../authorize`.

    Like Microsoft's SDKs, replaces the final `/authorize` of the authority with `/token`.
    """
    for challenge in response.headers.getall("WWW-Authenticate", ()):
        found = _AUTHORIZATION_URI.search(challenge)
        if found is not None:
            authorize = URL(found.group(1))
            if authorize.path.endswith("/authorize"):
                return str(authorize.with_path(authorize.path.removesuffix("/authorize") + "/token"))
    return None


def _oauth_message(response: Response) -> str:
    """`error: first line of error_description` from an OAuth error body, which never echoes secrets."""
    try:
        body = response.json()
        description = str(body.get("error_description", "")).splitlines()
        return f"{body['error']}: {description[0] if description else ''}".rstrip(": ")
    except (SourceResponseError, AttributeError, KeyError):  # not an OAuth error body
        return f"status {response.status}"


def token_form(conn: SourceConnection, endpoint: str) -> dict[str, str]:
    """The token request's form: the password grant when the connection has a user, else the client
    credentials grant. Entra ID v2 endpoints (`.../oauth2/v2.0/token`) take a scope; v1 and AD FS
    endpoints (`.../oauth2/token`, `/adfs/oauth2/token`) take a resource."""
    if conn.username and conn.password:
        form = {
            "grant_type": "password",
            "client_id": conn.oauth_client_id or PUBLIC_CLIENT_ID,
            "username": conn.username,
            "password": conn.password,
        }
        if conn.oauth_client_id and conn.oauth_client_secret:
            form["client_secret"] = conn.oauth_client_secret
    elif conn.oauth_client_id and conn.oauth_client_secret:
        form = {
            "grant_type": "client_credentials",
            "client_id": conn.oauth_client_id,
            "client_secret": conn.oauth_client_secret,
        }
    else:
        raise SourceAuthError(
            "the connection has neither a username and password nor an OAuth client id and secret",
            url=endpoint,
        )
    if URL(endpoint).path.endswith("/v2.0/token"):
        form["scope"] = conn.oauth_scope or f"{conn.base_url}/.default"
    else:
        form["resource"] = conn.base_url
    return form


class OAuthTokens:
    """The bearer token of one connection. Holds one lock, so concurrent requests fetch one token."""

    def __init__(
        self,
        connection: SourceConnection,
        *,
        transport: Transport,
        metrics: SourceMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._transport = transport
        self._refreshes = metrics.token_refreshes.labels(element=ELEMENT)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._endpoint = connection.oauth_token_url
        self._token: _Token | None = None

    async def token(self) -> str:
        """A token that is not due for refresh, fetching one if needed. Raises SourceAuthError when the
        token endpoint refuses the connection's credentials, and the transport's errors, which the
        caller's retry loop handles along with those of the request that needed the token."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        async with self._lock:
            token = self._token
            if token is None or self._clock() >= token.refresh_at:
                token = self._token = await self._fetch()
                self._refreshes.inc()
            return token.value

    def discard(self, refused: str) -> None:
        """Forget `refused` after the API answered 401 to it, unless another request replaced it already."""
        if self._token is not None and self._token.value == refused:
            self._token = None

    async def _fetch(self) -> _Token:
        endpoint = self._endpoint or await self._discover()
        self._endpoint = endpoint
        form = token_form(self._connection, endpoint)
        started = self._clock()
        response = await self._transport.send("POST", URL(endpoint), headers=_ACCEPT_JSON, data=form)
        if 400 <= response.status < 500 and response.status != 429:
            raise SourceAuthError(
                f"token endpoint {endpoint} refused the {form['grant_type']} grant: "
                f"{_oauth_message(response)}",
                url=endpoint,
                status=response.status,
            )
        self._transport.raise_for_status(response)
        body = response.json()
        access_token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access_token, str):
            raise SourceResponseError(
                f"token endpoint {endpoint} answered without an access_token", url=endpoint
            )
        try:
            expires_in = float(body["expires_in"])  # Entra ID v1 and ADFS send it as a string
        except (KeyError, TypeError, ValueError):  # no lifetime: use the token until the API refuses it
            return _Token(access_token, refresh_at=float("inf"))
        return _Token(access_token, refresh_at=started + expires_in - _refresh_margin(expires_in))

    async def _discover(self) -> str:
        """Find the token endpoint from the 401 challenge of an unauthenticated call to the service root."""
        root = URL(f"{self._connection.base_url}/api/data/{self._connection.api_version}/")
        response = await self._transport.send("GET", root, headers=_ACCEPT_JSON)
        if response.status != 401:
            self._transport.raise_for_status(response)  # a 5xx is worth retrying
        endpoint = token_endpoint_from_challenge(response)
        if endpoint is None:
            raise SourceAuthError(
                f"cannot discover the token endpoint: GET {root} answered {response.status} without a "
                "Bearer authorization_uri challenge; set the connection's OAuth token URL",
                url=str(root),
                status=response.status,
            )
        if root.scheme == "https" and not endpoint.startswith("https://"):
            raise SourceAuthError(
                f"{root} named the token endpoint {endpoint}, which is not HTTPS; "
                "credentials are not sent to it",
                url=str(root),
            )
        return endpoint
