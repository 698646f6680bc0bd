"""The token endpoint and bearer tokens, shaped like AD FS (`/adfs/oauth2/token`).

Tokens are opaque random strings the simulator remembers with their principal (the user name or
the client id) and expiry; they are not JWTs. A password grant needs a client_id but does not
check it against the configured clients (AD FS public clients have no secret). Client secrets
are read from the form only (client_secret_post), not from a Basic header.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.sim._clock import Clock
from gateway.sim._errors import OAuthError, Unauthenticated


@dataclass(frozen=True, slots=True)
class _Grant:
    principal: str
    expires_at: datetime


def challenge(base_url: str) -> str:
    """The `WWW-Authenticate` value of a 401, from which Microsoft's SDKs discover the authority."""
    return f"Bearer authorization_uri={base_url}/adfs/oauth2/authorize, resource_id={base_url}/"


class Authority:
    def __init__(
        self,
        *,
        users: Mapping[str, str],
        clients: Mapping[str, str],
        token_lifetime_seconds: float,
        clock: Clock,
    ) -> None:
        self.users = dict(users)
        self.clients = dict(clients)
        self.token_lifetime_seconds = token_lifetime_seconds
        self._clock = clock
        self._tokens: dict[str, _Grant] = {}

    def issue(self, form: Mapping[str, str], *, base_url: str) -> dict[str, object]:
        """Answer a token request; raise OAuthError as AD FS would refuse it."""
        grant_type = form.get("grant_type")
        if grant_type == "password":
            principal = self._check_password(form)
        elif grant_type == "client_credentials":
            principal = self._check_client(form)
        else:
            raise OAuthError(
                400, "unsupported_grant_type", f"MSIS9612: The grant_type '{grant_type}' is not supported."
            )
        audience = _audience(form, base_url)
        now = self._clock()
        self._tokens = {token: grant for token, grant in self._tokens.items() if grant.expires_at > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Grant(principal, now + timedelta(seconds=self.token_lifetime_seconds))
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": math.ceil(self.token_lifetime_seconds),
            **audience,
        }

    def authenticate(self, authorization: str | None) -> str:
        """The principal of a valid `Authorization: Bearer` header; Unauthenticated otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        grant = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            raise Unauthenticated("no valid bearer token")
        if grant.expires_at <= self._clock():
            del self._tokens[token.strip()]
            raise Unauthenticated("the bearer token has expired")
        return grant.principal

    def _check_password(self, form: Mapping[str, str]) -> str:
        username, password = _required(form, "username"), _required(form, "password")
        _required(form, "client_id")
        if self.users.get(username) != password:
            raise OAuthError(400, "invalid_grant", "MSIS9659: Invalid 'username' or 'password'.")
        return username

    def _check_client(self, form: Mapping[str, str]) -> str:
        client_id, secret = _required(form, "client_id"), _required(form, "client_secret")
        if self.clients.get(client_id) != secret:
            raise OAuthError(
                401,
                "invalid_client",
                "MSIS9622: Client authentication failed. Please verify the credential provided for client "
                "authentication is valid.",
            )
        return client_id


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthError(400, "invalid_request", f"MSIS9609: The '{name}' parameter is missing or empty.")
    return value


def _audience(form: Mapping[str, str], base_url: str) -> dict[str, str]:
    """The `resource` or `scope` the token is for, which must name this service (with or without `/`)."""
    if resource := form.get("resource"):
        if resource.rstrip("/") != base_url:
            raise OAuthError(
                400,
                "invalid_resource",
                f"MSIS9602: The received 'resource' parameter {resource!r} is not valid.",
            )
        return {"resource": resource}
    if scope := form.get("scope"):
        for item in scope.split():
            if item.endswith("/.default") and item.removesuffix("/.default").rstrip("/") == base_url:
                return {"scope": scope}
        raise OAuthError(400, "invalid_scope", f"The scope {scope!r} does not name {base_url}/.default.")
    raise OAuthError(400, "invalid_request", "MSIS9611: The 'resource' or 'scope' parameter is missing.")
