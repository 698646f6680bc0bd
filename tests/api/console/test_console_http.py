"""The console over plain HTTP: its security headers, sessions, CSRF and same-origin checks, and that
every page is reachable and loads nothing from outside the gateway."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.runtime import RunningGateway
from gateway.sim import Simulator
from tests.conftest import ADMIN_TOKEN, seed_instance
from tests.polling._support import create, only

PAGES = ("/console/instances", "/console/instances/new")


@pytest.fixture
async def signed_in(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe: the jar keeps cookies of an IP address host, as browsers do.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=gateway.api_url, cookie_jar=jar) as session:
        async with session.post("/console/sign-in", data={"token": ADMIN_TOKEN}, allow_redirects=False) as r:
            assert r.status == 303
        yield session


async def _csrf(session: aiohttp.ClientSession) -> str:
    async with session.get("/console/instances") as response:
        match = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert match is not None
    return match.group(1)


async def test_pages_need_a_session_and_carry_the_security_headers(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession(base_url=gateway.api_url) as session:
        for path in (*PAGES, "/console/"):
            async with session.get(path, allow_redirects=False) as response:
                assert response.status == 303, path
                assert response.headers["Location"] == "/console/sign-in"
                assert response.headers["X-Frame-Options"] == "DENY"
        async with session.get("/console/sign-in") as response:
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        # The API does not take the console's cookie: it wants the bearer token.
        async with session.get("/instances") as response:
            assert response.status == 401


async def test_every_page_is_reachable_and_loads_only_the_gateways_own_files(
    signed_in: aiohttp.ClientSession, api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    instance_pages = [f"/console/instances/{instance_id}{page}" for page in ("", "/edit", "/dead-letters")]
    for path in (*PAGES, *instance_pages, "/console/sign-in"):
        async with signed_in.get(path) as response:
            assert response.status == 200, path
            assert response.headers["Content-Security-Policy"]
            text = await response.text()
        # Nothing inline for the policy to refuse: no script body, style attribute or event handler.
        assert "<script>" not in text
        assert "style=" not in text
        assert re.search(r"\son[a-z]+=", text) is None
        assets = re.findall(r'(?:src|href)="([^"#]+)"', text)
        for asset in assets:
            assert asset.startswith("/console/"), (path, asset)
            async with signed_in.get(asset, allow_redirects=False) as asset_response:
                assert asset_response.status in (200, 303), asset
    async with signed_in.get("/console/static/console.css") as response:
        assert response.status == 200
        assert "url(" not in await response.text()


async def test_a_post_without_the_sessions_csrf_token_or_from_another_origin_is_refused(
    signed_in: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    form = {"name": "x", "resources": "accounts"}
    async with signed_in.post("/console/instances/new", data=form, allow_redirects=False) as response:
        assert response.status == 403
    async with signed_in.post(
        "/console/instances/new", data={**form, "csrf": "forged"}, allow_redirects=False
    ) as response:
        assert response.status == 403
    token = await _csrf(signed_in)
    foreign = {"Origin": "http://attacker.example"}
    async with signed_in.post(
        "/console/instances/new", data={**form, "csrf": token}, headers=foreign, allow_redirects=False
    ) as response:
        assert response.status == 403
    async with signed_in.post(
        "/console/sign-in", data={"token": ADMIN_TOKEN}, headers=foreign, allow_redirects=False
    ) as response:
        assert response.status == 403
    # With its token, the same post is the form's: shown again with the validator's problems.
    async with signed_in.post(
        "/console/instances/new", data={**form, "csrf": token}, allow_redirects=False
    ) as response:
        assert response.status == 400
        assert "is required" in await response.text()
    async with signed_in.post("/console/sign-out", data={"csrf": token}, allow_redirects=False) as response:
        assert response.status == 303
        assert response.cookies["gateway_console"].value == ""


async def test_the_consoles_refusals_are_pages_not_the_apis_json(signed_in: aiohttp.ClientSession) -> None:
    async with signed_in.get("/console/instances/no-such-id") as response:
        assert response.status == 404
        assert response.content_type == "text/html"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "no instance with id &#x27;no-such-id&#x27;" in await response.text()
    async with signed_in.get("/console/no-such-page") as response:
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "Back to the console" in await response.text()  # the console's page, not JSON
    async with signed_in.post("/console/instances/new", data={"name": "x"}) as response:
        assert response.status == 403
        assert response.content_type == "text/html"
        assert "CSRF token is missing or wrong" in await response.text()
