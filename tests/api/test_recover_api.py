"""POST /instances/{id}/subscriptions/{sid}/recover: what one subscription failed to deliver between
two times is sent again, and nothing of another subscription or of another time."""

from __future__ import annotations

from datetime import UTC, datetime

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
    subscription,
)
from tests.polling._support import create, only


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _unavailable(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=503)


async def test_recover_replays_one_subscriptions_dead_letters_between_since_and_until(
    settings: Settings, registry: CollectorRegistry, simulator: Simulator
) -> None:
    settings = delivery_settings(settings)
    recovered = False

    async def down_until_recovered(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=200 if recovered else 503)

    async with (
        receiving() as own,
        receiving(down_until_recovered) as crm,
        receiving(_unavailable) as other,
        start_gateway(settings, registry=registry) as gateway,
        aiohttp.ClientSession(
            base_url=gateway.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as api,
    ):
        body = only(seed_instance("2016", simulator), "accounts")
        body["configuration"]["event.notification.callback.url"] = own.url
        body["subscriptions"] = [
            subscription("crm", crm.url, objectTypes=["contacts"]),
            subscription("other", other.url, objectTypes=["contacts"]),
        ]
        instance_id = await create(api, body)
        batches = [
            [change(instance_id, n, object_type="contacts") for n in range(k, k + 2)] for k in (0, 2, 4)
        ]
        stamps = []
        for index, batch in enumerate(batches):
            stamps.append(_now())
            await produce(settings, batch, object_type="contacts")
            await dead_letters(settings, expect=4 * (index + 1), within=60)  # both subscriptions
        since, until = stamps[1], stamps[2]  # the second batch's dead letters only

        recovered = True
        recover = f"/instances/{instance_id}/subscriptions/crm/recover"
        async with api.post(recover, json={"since": since, "until": until}) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        wanted = {event.id for event in batches[1]}
        assert (answer["subscriptionId"], answer["replayed"], set(answer["ids"])) == ("crm", 2, wanted)

        async def delivered() -> bool:
            params = {"status": "delivered", "subscription": "crm"}
            async with api.get(f"/instances/{instance_id}/deliveries", params=params) as r:
                return {d["webhookId"] for d in (await r.json())["deliveries"]} == wanted

        await wait_for(delivered, within=30)
        async with api.get(
            f"/instances/{instance_id}/deliveries", params={"subscription": "crm"}
        ) as response:
            left = {letter["eventId"] for letter in (await response.json())["deadLetters"]}
        assert left == {event.id for event in (*batches[0], *batches[2])}
        async with api.get(
            f"/instances/{instance_id}/deliveries", params={"subscription": "other"}
        ) as response:
            assert (await response.json())["count"] == 6  # another subscription's are not touched

        async with api.post(f"/instances/{instance_id}/subscriptions/nope/recover", json={}) as response:
            assert response.status == 404
        async with api.post(recover, json={"until": until}) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["path"] == "$.since"
        async with api.post(recover, json={"since": until, "until": since}) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["path"] == "$.until"

    # Before the recovery each of its events was tried once per attempt; after it, once more.
    attempts = 1 + len(settings.retry_schedule)
    assert len(crm.hits) == 6 * attempts + 2
    assert own.ids >= {event.id for batch in batches for event in batch}
