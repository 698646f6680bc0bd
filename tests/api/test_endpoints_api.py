"""GET /instances/{id}/endpoints: each endpoint's delivery state as the deliverers see it: delivering,
failing since its first failed attempt, disabled by a 410 until a PATCH, or off; in a replica
that only serves the API too."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.runtime import start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import ADMIN_TOKEN, seed_instance, wait_for
from tests.delivery._support import (
    change,
    dead_letters,
    delivery_settings,
    produce,
    receiving,
    schema_validator,
    subscription,
)
from tests.polling._support import create, only

ENDPOINTS = schema_validator("endpoints.schema.json")


async def _failing(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=500)


async def _gone(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=410)


async def test_the_endpoints_show_delivering_failing_disabled_and_off(
    settings: Settings, registry: CollectorRegistry, simulator: Simulator
) -> None:
    # A long Retry-After bound makes a failing streak last a minute without a failure (its quiet
    # spell is twice the longest a retry may wait), so the API-only replica, started later, still
    # finds it failing.
    settings = delivery_settings(settings, delivery_retry_after_max_seconds=30.0)
    async with (
        receiving() as own,
        receiving(_failing) as failing,
        receiving(_gone) as gone,
        start_gateway(settings, registry=registry) as gateway,
        aiohttp.ClientSession(
            base_url=gateway.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as api,
    ):
        body = only(seed_instance("2016", simulator), "accounts")
        body["configuration"]["event.notification.callback.url"] = own.url
        body["subscriptions"] = [
            subscription("down", failing.url, objectTypes=["contacts"]),
            subscription("leaving", gone.url, objectTypes=["contacts"]),
            subscription("paused", own.url, objectTypes=["contacts"], enabled=False),
        ]
        instance_id = await create(api, body)
        event = change(instance_id, 1, object_type="contacts")
        await produce(settings, [event], object_type="contacts")
        await dead_letters(settings, expect=2, within=60)  # down's after its retries, leaving's at once
        await wait_for(lambda: event.id in own.ids)

        async def endpoints() -> dict[str | None, dict[str, Any]]:
            async with api.get(f"/instances/{instance_id}/endpoints") as response:
                assert response.status == 200
                answer = await response.json()
            ENDPOINTS.validate(answer)
            assert answer["instanceId"] == instance_id
            return {e.pop("subscriptionId"): e for e in answer["endpoints"]}

        states = await endpoints()
        assert list(states) == [None, "down", "leaving", "paused"]
        assert states[None] == {"state": "delivering"}
        assert states["down"]["state"] == "failing"
        assert states["leaving"]["state"] == "disabled"
        assert (states["leaving"]["cause"], states["leaving"]["lastStatus"]) == ("gone", 410)
        assert states["paused"] == {"state": "off"}

        # A PATCH lifts the 410's disabling: the endpoint shows delivering before its next event.
        patch = {"configuration": {"event.notification.callback.url": own.url}}
        async with api.patch(f"/instances/{instance_id}/subscriptions/leaving", json=patch) as response:
            assert response.status == 200, await response.text()

        async def lifted() -> bool:
            return (await endpoints())["leaving"] == {"state": "delivering"}

        await wait_for(lifted)
        # The change started every failing streak of the instance over: down fails again with its
        # next event.
        assert (await endpoints())["down"] == {"state": "delivering"}
        again = change(instance_id, 2, object_type="contacts")
        await produce(settings, [again], object_type="contacts")
        await dead_letters(settings, expect=3, within=60)
        assert (await endpoints())["down"]["state"] == "failing"
        async with api.get("/instances/nope/endpoints") as response:
            assert response.status == 404

    # A replica that only serves the API (role api) reads the same states from the topic.
    async with (
        start_gateway(settings, role="api", registry=CollectorRegistry()) as reader,
        aiohttp.ClientSession(
            base_url=reader.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as api,
        api.get(f"/instances/{instance_id}/endpoints") as response,
    ):
        shown = {e["subscriptionId"]: e["state"] for e in (await response.json())["endpoints"]}
    assert shown == {None: "delivering", "down": "failing", "leaving": "delivering", "paused": "off"}
