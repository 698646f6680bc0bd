"""GET /instances/{id}/events/stream: change events as Server-Sent Events, as they are committed."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway.sim import Simulator
from tests.conftest import seed_instance
from tests.polling._support import create, insert, only


async def _next_event(response: aiohttp.ClientResponse, name: str, within: float = 20.0) -> dict[str, Any]:
    """The data of the next SSE event called `name`, skipping others and comments."""
    event = None
    async with asyncio.timeout(within):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == name:
                data: dict[str, Any] = orjson.loads(line.removeprefix("data: "))
                return data
    raise AssertionError(f"the stream ended before a {name!r} event")


async def test_a_created_record_arrives_on_the_stream(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    async with api.get(f"/instances/{instance_id}/events/stream?eventType=CREATED") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await _next_event(response, "ready")
        record_id = insert(simulator, "accounts")
        change = await _next_event(response, "change")
    assert change["objectId"] == record_id
    assert change["eventType"] == "CREATED"
    assert change["resource"] == "accounts"
    assert change["type"] == "crm.accounts.created"


async def test_a_stream_of_an_unknown_resource_or_event_type_is_refused(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    for query, path in [("resource=leads", "$.query.resource"), ("eventType=RENAMED", "$.query.eventType")]:
        async with api.get(f"/instances/{instance_id}/events/stream?{query}") as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["path"] == path
    async with api.get("/instances/nope/events/stream") as response:
        assert response.status == 404
