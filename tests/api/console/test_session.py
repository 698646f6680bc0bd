"""Console sessions and CSRF tokens: signed, expiring, bound to the admin token."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.console._session import LIFETIME_SECONDS, SessionSigner


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_issued_cookie_is_a_session_until_it_expires() -> None:
    clock = Clock()
    signer = SessionSigner("admin-token", clock=clock)
    cookie = signer.issue()
    assert "admin-token" not in cookie
    assert signer.verify(cookie) is not None
    clock.now += LIFETIME_SECONDS - 1
    assert signer.verify(cookie) is not None
    clock.now += 1
    assert signer.verify(cookie) is None


def test_a_cookie_signed_with_another_admin_token_or_altered_is_refused() -> None:
    cookie = SessionSigner("admin-token").issue()
    assert SessionSigner("other-token").verify(cookie) is None
    issued, nonce, signature = cookie.split(".")
    signer = SessionSigner("admin-token")
    assert signer.verify(f"{int(issued) + 1}.{nonce}.{signature}") is None
    assert signer.verify(f"{issued}.{nonce}x.{signature}") is None
    assert signer.verify(None) is None
    assert signer.verify("") is None


@given(st.text(max_size=200))
def test_no_made_up_cookie_is_a_session(cookie: str) -> None:
    assert SessionSigner("admin-token").verify(cookie) is None


def test_the_csrf_token_belongs_to_its_session_only() -> None:
    signer = SessionSigner("admin-token")
    first = signer.verify(signer.issue())
    second = signer.verify(signer.issue())
    assert first is not None
    assert second is not None
    token = signer.csrf_token(first)
    assert signer.csrf_matches(first, token)
    assert not signer.csrf_matches(second, token)
    assert not signer.csrf_matches(first, "")


def test_the_admin_token_is_compared_whole() -> None:
    signer = SessionSigner("admin-token")
    assert signer.token_matches("admin-token")
    assert not signer.token_matches("admin-toke")
    assert not signer.token_matches("admin-token ")
    assert not signer.token_matches("")
