"""End to end: a change in the simulator, polled by the gateway into Kafka and delivered by the same
gateway (role `all`) as a signed webhook, for the seed's instance JSON."""

from __future__ import annotations

import base64
import hashlib
import hmac

import aiohttp
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from gateway.runtime import RunningGateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.delivery._support import KEY, receiving, sample, schema_validator


async def test_a_change_in_the_simulator_reaches_the_callback_signed(
    settings: Settings,
    simulator: Simulator,
    gateway: RunningGateway,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    async with receiving() as receiver:
        body = seed_instance("2016", simulator)
        body["configuration"]["event.notification.callback.url"] = receiver.url
        body["configuration"]["event.notification.signature.key"] = KEY
        async with api.post("/instances", json=body) as response:
            assert response.status == 201, await response.text()
            instance_id = (await response.json())["id"]
        # The first change-tracking call is the baseline and publishes nothing.
        await wait_for(
            lambda: sample(registry, "gateway_polls_total", resource="accounts", outcome="ok") >= 1
        )

        account_id = str(simulator.state.upsert("accounts")["accountid"])
        await wait_for(lambda: any(account_id in hit.body.decode() for hit in receiver.hits), within=30)

    (hit,) = [hit for hit in receiver.hits if account_id in hit.body.decode()]
    message = hit.json()["message"]
    schema_validator("webhook-elements.schema.json").validate(hit.json())
    assert message["instanceId"] == instance_id
    assert message["events"][0]["objectType"] == "accounts"
    assert message["events"][0]["objectId"] == account_id
    assert message["events"][0]["eventType"] == "CREATED"
    assert hit.headers["webhook-id"] == message["eventId"]
    Webhook(KEY.encode()).verify(hit.body, hit.headers)
    digest = hmac.new(KEY.encode(), hit.body, hashlib.sha256).digest()
    assert hit.headers["Elements-Webhook-Signature"] == "sha256=" + base64.b64encode(digest).decode()
    assert sample(registry, "gateway_delivery_end_to_end_seconds_count") >= 1
