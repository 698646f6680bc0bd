"""Console sessions: a signed cookie, and the CSRF token of each session's forms.

The cookie holds no secret, only when it was issued and a random nonce, signed with a key derived
from the admin token, so that any API replica can check it and changing the token signs everyone
out. The CSRF token is derived from the nonce: a page from this session carries it in every form
that changes state, and a form posted from anywhere else cannot know it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "gateway_console"
LIFETIME_SECONDS = 8 * 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    issued_at: int


class SessionSigner:
    def __init__(self, admin_token: str, *, clock: Callable[[], float] = time.time) -> None:
        self._token = admin_token.encode()
        self._key = hmac.digest(self._token, b"event-gateway console session", hashlib.sha256)
        self._clock = clock

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def issue(self) -> str:
        """A new session's cookie value."""
        payload = f"{int(self._clock())}.{secrets.token_urlsafe(18)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie value stands for; None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        issued, nonce, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{issued}.{nonce}")):
            return None
        if not issued.isdigit() or not 0 <= self._clock() - int(issued) < LIFETIME_SECONDS:
            return None
        return Session(nonce=nonce, issued_at=int(issued))

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def csrf_matches(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def _sign(self, payload: str) -> str:
        return _b64(hmac.digest(self._key, payload.encode(), hashlib.sha256))
