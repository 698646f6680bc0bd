"""POST /instances/{id}/test-event: one signed test notification, and the receiver's answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from gateway.runtime import start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import ADMIN_TOKEN, seed_instance
from tests.delivery._support import KEY, delivery_settings, receiving
from tests.polling._support import create, only


@pytest.fixture
async def loopback_api(
    settings: Settings, registry: CollectorRegistry
) -> AsyncIterator[aiohttp.ClientSession]:
    async with (
        start_gateway(delivery_settings(settings), registry=registry) as gateway,
        aiohttp.ClientSession(
            base_url=gateway.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as session,
    ):
        yield session


async def test_a_test_event_is_signed_and_the_answer_told(
    loopback_api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    answers = [204, 500]

    async def answer(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=answers.pop(0))

    async with receiving(answer) as receiver:
        body = only(seed_instance("2016", simulator), "accounts")
        body["configuration"]["event.notification.callback.url"] = receiver.url
        body["configuration"]["event.notification.signature.key"] = KEY
        body["configuration"]["event.notification.enabled"] = "false"  # no polling: only the test event
        instance_id = await create(loopback_api, body)
        async with loopback_api.post(f"/instances/{instance_id}/test-event") as response:
            assert response.status == 200
            delivered = await response.json()
        async with loopback_api.post(f"/instances/{instance_id}/test-event") as response:
            refused = await response.json()
    assert delivered["delivered"] is True
    assert delivered["status"] == 204
    (first, _refused_hit) = receiver.hits
    assert first.webhook_id == delivered["webhookId"]
    Webhook(KEY.encode()).verify(first.body, first.headers)
    assert first.json()["message"]["instanceId"] == instance_id
    assert first.json()["message"]["events"][0]["objectType"] == "eventGatewayTest"
    assert refused["delivered"] is False
    assert refused["status"] == 500
    assert "answered 500" in refused["error"]
    assert "s3cret" not in str(refused)  # the callback URL's token is never told


async def test_an_instance_without_a_callback_url_has_nothing_to_test(
    loopback_api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = only(seed_instance("2016", simulator), "accounts")
    del body["configuration"]["event.notification.callback.url"]
    instance_id = await create(loopback_api, body)
    async with loopback_api.post(f"/instances/{instance_id}/test-event") as response:
        assert response.status == 400
        assert (await response.json())["errors"][0]["path"] == (
            "$.configuration['event.notification.callback.url']"
        )
    async with loopback_api.post("/instances/nope/test-event") as response:
        assert response.status == 404
