"""The pure parts of the transport and of token discovery."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.sources.dynamics.auth import token_endpoint_from_challenge
from gateway.sources.dynamics.transport import Response, RetryPolicy, dataverse_message, parse_retry_after

_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (format_datetime(datetime(2026, 1, 2, 3, 4, 35, tzinfo=UTC), usegmt=True), 30.0),
        ("Fri, 02 Jan 2026 03:04:00 GMT", 0.0),  # in the past: no wait
        (None, None),
        ("soon", None),
        ("-3", None),
        ("nan", None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=_NOW) == seconds


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)

    for failures, low, high in [(1, 0.5, 1.5), (2, 1.0, 3.0), (3, 2.0, 5.0), (10, 5.0, 5.0)]:
        assert all(low <= policy.backoff(failures) <= high for _ in range(50))


def _response(body: bytes, *headers: tuple[str, str], status: int = 401) -> Response:
    return Response(
        URL("https://org.crm.dynamics.com/api/data/v9.2/"),
        status,
        CIMultiDictProxy(CIMultiDict(headers)),
        body,
    )


@pytest.mark.parametrize(
    ("challenge", "endpoint"),
    [
        (
            "Bearer authorization_uri=https://login.microsoftonline.com/tid/oauth2/authorize, "
            "resource_id=https://org.crm.dynamics.com/",
            "https://login.microsoftonline.com/tid/oauth2/token",
        ),
        (
            'Bearer authorization_uri="https://adfs.contoso.com/adfs/oauth2/authorize", resource_id="x"',
            "https://adfs.contoso.com/adfs/oauth2/token",
        ),
        ("Bearer realm=x", None),
        ("Bearer authorization_uri=https://login.example/oauth2/login", None),
    ],
)
def test_token_endpoint_from_the_bearer_challenge(challenge: str, endpoint: str | None) -> None:
    assert token_endpoint_from_challenge(_response(b"", ("WWW-Authenticate", challenge))) == endpoint


def test_token_endpoint_from_any_of_several_challenges() -> None:
    response = _response(
        b"",
        ("WWW-Authenticate", "Negotiate"),
        ("WWW-Authenticate", "Bearer authorization_uri=https://a.example/adfs/oauth2/authorize"),
    )
    assert token_endpoint_from_challenge(response) == "https://a.example/adfs/oauth2/token"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error":{"code":"0x80040217","message":"account With Id = 1 Does Not Exist"}}',
            "0x80040217: account With Id = 1 Does Not Exist",
        ),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"", "(empty body)"),
    ],
)
def test_dataverse_message(body: bytes, message: str) -> None:
    assert dataverse_message(_response(body, status=404)) == message
