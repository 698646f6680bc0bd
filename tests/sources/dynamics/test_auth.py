"""OAuth against the simulator's AD FS-shaped token endpoint."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from gateway import __version__
from gateway.errors import SourceAuthError
from gateway.instances.model import SourceConnection
from gateway.sim import ManualClock, Simulator
from gateway.sources.dynamics.auth import PUBLIC_CLIENT_ID, token_form
from gateway.sources.dynamics.client import user_agent

from ._support import CLIENT_ID, CLIENT_SECRET, SECRETS, USER, MakeSource, SentRequest, collect, fetch, sample

_ACCOUNTS = fetch("/hubs/crm/accounts", page_size=2)
_TOKEN_PATH = "/adfs/oauth2/token"


def _log(sim: Simulator) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in sim.requests]


def _bearers(sent: list[SentRequest]) -> list[str]:
    return [r.headers["Authorization"] for r in sent if "Authorization" in r.headers]


async def test_token_expiring_mid_poll_is_refreshed_once_and_the_page_retried(
    sim: Simulator,
    clock: ManualClock,
    make_source: MakeSource,
    registry: CollectorRegistry,
    sent: list[SentRequest],
) -> None:
    sim.state.bulk_load("accounts", 5)
    sim.authority.token_lifetime_seconds = 120
    pages = make_source().pages(_ACCOUNTS)

    first = await anext(pages)
    clock.advance(600)  # the service sees the token expire; the adapter's own clock does not
    rest = [page async for page in pages]

    assert sum(len(page.records) for page in [first, *rest]) == 5
    accounts = "/api/data/v9.2/accounts"
    assert _log(sim) == [
        ("POST", _TOKEN_PATH, 200),
        ("GET", accounts, 200),
        ("GET", accounts, 401),
        ("POST", _TOKEN_PATH, 200),
        ("GET", accounts, 200),
        ("GET", accounts, 200),
    ]
    assert sample(registry, "gateway_source_token_refreshes_total") == 2
    bearers = _bearers(sent)
    assert bearers[0] == bearers[1] != bearers[2] == bearers[3]


async def test_token_is_refreshed_before_it_expires(
    sim: Simulator, clock: ManualClock, make_source: MakeSource, registry: CollectorRegistry
) -> None:
    sim.authority.token_lifetime_seconds = 100  # refreshed at half its life, 50 s before it expires
    elapsed = [0.0]
    source = make_source(clock=lambda: elapsed[0])

    async def poll_at(seconds: float) -> None:
        clock.advance(seconds - elapsed[0])
        elapsed[0] = seconds
        await collect(source, _ACCOUNTS)

    await poll_at(0)
    await poll_at(49)
    assert sample(registry, "gateway_source_token_refreshes_total") == 1
    await poll_at(51)

    assert sample(registry, "gateway_source_token_refreshes_total") == 2
    assert 401 not in [status for _, _, status in _log(sim)]


async def test_token_endpoint_is_discovered_from_the_401_challenge(
    sim: Simulator, make_source: MakeSource
) -> None:
    source = make_source(oauth_token_url=None)

    await collect(source, _ACCOUNTS)
    await collect(source, _ACCOUNTS)

    assert _log(sim) == [
        ("GET", "/api/data/v9.2/", 401),
        ("POST", _TOKEN_PATH, 200),
        ("GET", "/api/data/v9.2/accounts", 200),
        ("GET", "/api/data/v9.2/accounts", 200),
    ]


async def test_client_credentials_grant(sim: Simulator, make_source: MakeSource) -> None:
    source = make_source(
        username=None, password=None, oauth_client_id=CLIENT_ID, oauth_client_secret=CLIENT_SECRET
    )

    await collect(source, _ACCOUNTS)

    assert [r.principal for r in sim.requests if r.path.endswith("/accounts")] == [CLIENT_ID]


async def test_concurrent_polls_fetch_one_token(
    sim: Simulator, make_source: MakeSource, registry: CollectorRegistry
) -> None:
    source = make_source()

    await asyncio.gather(*(collect(source, _ACCOUNTS) for _ in range(10)))

    assert [path for _, path, _ in _log(sim)].count(_TOKEN_PATH) == 1
    assert sample(registry, "gateway_source_token_refreshes_total") == 1


@pytest.mark.parametrize(
    "credentials",
    [
        {"password": "wrong-password"},
        {
            "username": None,
            "password": None,
            "oauth_client_id": CLIENT_ID,
            "oauth_client_secret": "wrong-secret",
        },
    ],
)
async def test_refused_credentials_raise_auth_error_naming_the_endpoint_but_no_secret(
    sim: Simulator,
    make_source: MakeSource,
    caplog: pytest.LogCaptureFixture,
    credentials: dict[str, str | None],
) -> None:
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SourceAuthError) as raised:
        await collect(make_source(**credentials), _ACCOUNTS)

    message = str(raised.value)
    assert not raised.value.retriable
    assert sim.token_url in message
    assert "MSIS96" in message  # AD FS's reason
    for secret in (*SECRETS, "wrong-password", "wrong-secret"):
        assert secret not in message
        assert secret not in caplog.text
    assert _log(sim) == [("POST", _TOKEN_PATH, raised.value.status)]


async def test_connection_without_credentials_is_an_auth_error(make_source: MakeSource) -> None:
    with pytest.raises(SourceAuthError, match="neither a username and password nor an OAuth client"):
        await collect(make_source(username=None, password=None), _ACCOUNTS)


def _connection(
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    scope: str | None = None,
) -> SourceConnection:
    return SourceConnection(
        base_url="https://org.crm.dynamics.com",
        api_version="v9.2",
        username=username,
        password=password,
        oauth_token_url=None,
        oauth_client_id=client_id,
        oauth_client_secret=client_secret,
        oauth_scope=scope,
    )


@pytest.mark.parametrize(
    ("endpoint", "audience"),
    [
        (
            "https://login.microsoftonline.com/contoso/oauth2/token",
            {"resource": "https://org.crm.dynamics.com"},
        ),
        ("https://adfs.contoso.com/adfs/oauth2/token", {"resource": "https://org.crm.dynamics.com"}),
        (
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
            {"scope": "https://org.crm.dynamics.com/.default"},
        ),
    ],
)
def test_password_grant_names_the_resource_or_scope_the_endpoint_expects(
    endpoint: str, audience: dict[str, str]
) -> None:
    form = token_form(_connection(username=USER, password="pw"), endpoint)

    assert form == {
        "grant_type": "password",
        "client_id": PUBLIC_CLIENT_ID,
        "username": USER,
        "password": "pw",
        **audience,
    }


def test_client_credentials_grant_uses_the_configured_scope() -> None:
    connection = _connection(client_id="app", client_secret="s", scope="api://custom/.default")

    form = token_form(connection, "https://login.microsoftonline.com/t/oauth2/v2.0/token")

    assert form == {
        "grant_type": "client_credentials",
        "client_id": "app",
        "client_secret": "s",
        "scope": "api://custom/.default",
    }


async def test_every_request_names_the_gateway_and_its_replica_in_the_user_agent(
    sim: Simulator, make_source: MakeSource, sent: list[SentRequest]
) -> None:
    sim.state.bulk_load("accounts", 3)

    await collect(make_source(replica_id="pollers-1"), _ACCOUNTS)

    expected = f"event-gateway/{__version__} (pollers-1)"
    assert sent
    assert [r.headers["User-Agent"] for r in sent] == [expected] * len(sent)
    # The simulator logs it too: the discovery call, the token request and every page.
    assert {r.path for r in sim.requests} >= {_TOKEN_PATH, "/api/data/v9.2/accounts"}
    assert {r.user_agent for r in sim.requests} == {expected}


@pytest.mark.parametrize(
    ("replica", "expected"),
    [
        (None, f"event-gateway/{__version__}"),
        ("", f"event-gateway/{__version__}"),
        ("gateway-poller-0", f"event-gateway/{__version__} (gateway-poller-0)"),
        ("host (1)\r\nX: y", f"event-gateway/{__version__} (host _1___X: y)"),
        ("réplica\\2", f"event-gateway/{__version__} (r_plica_2)"),
    ],
)
def test_the_user_agent_keeps_the_replica_id_inside_one_comment(replica: str | None, expected: str) -> None:
    assert user_agent(replica) == expected
