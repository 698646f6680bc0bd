from __future__ import annotations

import aiohttp
import pytest

from gateway.sim import ManualClock, Simulator

from ._support import CLIENT, PASSWORD, SECRET, USER, Api, SimulatorFactory, request_token


async def test_unauthenticated_request_gets_the_bearer_challenge(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        async with http.get(f"{sim.api_url}/accounts", headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == (
                f"Bearer authorization_uri={sim.base_url}/adfs/oauth2/authorize, resource_id={sim.base_url}/"
            )


async def test_password_grant_issues_a_token_for_the_user(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    form = {
        "grant_type": "password",
        "username": USER,
        "password": PASSWORD,
        "client_id": "any-public-client",
    }

    reply = await request_token(http, sim, {**form, "resource": f"{sim.base_url}/"})

    assert reply.status == 200
    answer = reply.json()
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 3600
    assert answer["resource"] == f"{sim.base_url}/"
    api = Api(http, sim.api_url, answer["access_token"])
    assert (await api.get("accounts")).status == 200
    assert sim.requests[-1].principal == USER


async def test_client_credentials_grant_with_a_scope(sim: Simulator, http: aiohttp.ClientSession) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET}

    reply = await request_token(http, sim, {**form, "scope": f"{sim.base_url}/.default"})

    assert reply.status == 200
    assert reply.json()["scope"] == f"{sim.base_url}/.default"
    assert (await Api(http, sim.api_url, reply.json()["access_token"]).get("contacts")).status == 200
    assert sim.requests[-1].principal == CLIENT


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {"grant_type": "password", "username": USER, "password": "wrong", "client_id": "c"},
            400,
            "invalid_grant",
        ),
        (
            {"grant_type": "password", "username": "mallory", "password": PASSWORD, "client_id": "c"},
            400,
            "invalid_grant",
        ),
        ({"grant_type": "password", "username": USER, "password": PASSWORD}, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "wrong"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "other", "client_secret": SECRET},
            401,
            "invalid_client",
        ),
        ({"grant_type": "authorization_code", "code": "x"}, 400, "unsupported_grant_type"),
    ],
)
async def test_bad_credentials_are_refused(
    sim: Simulator, http: aiohttp.ClientSession, form: dict[str, str], status: int, error: str
) -> None:
    reply = await request_token(http, sim, {**form, "resource": sim.base_url})

    assert reply.status == status
    assert reply.json()["error"] == error
    assert reply.json()["error_description"]


async def test_token_for_another_resource_is_refused(sim: Simulator, http: aiohttp.ClientSession) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET}

    wrong_resource = await request_token(http, sim, {**form, "resource": "https://contoso.crm.dynamics.com/"})
    wrong_scope = await request_token(http, sim, {**form, "scope": "https://graph.microsoft.com/.default"})
    neither = await request_token(http, sim, form)

    assert (wrong_resource.status, wrong_resource.json()["error"]) == (400, "invalid_resource")
    assert (wrong_scope.status, wrong_scope.json()["error"]) == (400, "invalid_scope")
    assert (neither.status, neither.json()["error"]) == (400, "invalid_request")


async def test_tokens_expire_after_their_lifetime(
    make_simulator: SimulatorFactory, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    sim = await make_simulator(token_lifetime_seconds=0.5)
    api = await Api.login(http, sim)
    assert (await api.get("accounts")).status == 200

    clock.advance(0.5)
    reply = await api.get("accounts")

    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    token = await request_token(
        http,
        sim,
        {
            "grant_type": "client_credentials",
            "client_id": CLIENT,
            "client_secret": SECRET,
            "resource": sim.base_url,
        },
    )
    assert token.json()["expires_in"] == 1  # whole seconds, rounded up
