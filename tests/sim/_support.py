"""Helpers shared by the simulator's tests: credentials and a small authenticated client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from gateway.sim import Simulator

USER, PASSWORD = "alice@contoso.example", "alice-password"
CLIENT, SECRET = "gateway-tests", "client-secret"

SimulatorFactory = Callable[..., Awaitable[Simulator]]  # the `make_simulator` fixture


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def request_token(http: aiohttp.ClientSession, sim: Simulator | str, form: dict[str, str]) -> Reply:
    """POST `form` to the token endpoint of `sim`, or of the simulator at that base URL."""
    url = f"{sim}/adfs/oauth2/token" if isinstance(sim, str) else sim.token_url
    async with http.post(url, data=form) as response:
        return Reply(response.status, response.headers, await response.read())


class Api:
    """A client of one simulator's data API that holds a bearer token."""

    def __init__(self, http: aiohttp.ClientSession, api_url: str, token: str) -> None:
        self.http = http
        self.api_url = api_url
        self.token = token

    @classmethod
    async def login(cls, http: aiohttp.ClientSession, sim: Simulator) -> Api:
        form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET}
        reply = await request_token(http, sim, {**form, "resource": sim.base_url})
        assert reply.status == 200, reply.body
        return cls(http, sim.api_url, reply.json()["access_token"])

    async def get(
        self,
        url: str,
        *,
        prefer: str | None = None,
        params: dict[str, str] | None = None,
        user_agent: str | None = None,
    ) -> Reply:
        """GET `url`, absolute or relative to the API root, exactly as given."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if prefer is not None:
            headers["Prefer"] = prefer
        if user_agent is not None:
            headers["User-Agent"] = user_agent
        absolute = url if url.startswith("http") else f"{self.api_url}/{url}"
        async with self.http.get(absolute, headers=headers, params=params) as response:
            return Reply(response.status, response.headers, await response.read())

    async def pages(self, url: str, *, prefer: str, params: dict[str, str] | None = None) -> list[Reply]:
        """Every page of a query, following each `@odata.nextLink` unchanged with the same Prefer."""
        replies = [await self.get(url, prefer=prefer, params=params)]
        while (next_link := replies[-1].json().get("@odata.nextLink")) is not None:
            assert replies[-1].status == 200
            replies.append(await self.get(next_link, prefer=prefer))
        assert replies[-1].status == 200, replies[-1].body
        return replies


async def until(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds; callers bound the wait with `asyncio.timeout`."""
    while not condition():  # noqa: ASYNC110 - the state belongs to the simulator, which signals nothing
        await asyncio.sleep(0.01)


def rows(replies: list[Reply]) -> list[dict[str, Any]]:
    return [row for reply in replies for row in reply.json()["value"]]
