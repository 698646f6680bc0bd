"""A dead letter, listed and replayed through the admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from gateway.api.auth import bearer_auth
from gateway.api.deliveries import add_delivery_routes
from gateway.api.responses import problems_middleware
from gateway.delivery.dead_letters import DeadLetters
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, wait_for
from tests.delivery._support import (
    KEY,
    change,
    dead_letters,
    delivering,
    delivery_history,
    delivery_settings,
    produce,
    receiving,
    sample,
    schema_validator,
    webhook_instance,
)


@asynccontextmanager
async def admin_api(store: DeadLetters, settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    app = web.Application(middlewares=[bearer_auth(ADMIN_TOKEN), problems_middleware])
    add_delivery_routes(app, store, delivery_history(settings))
    async with (
        TestServer(app, host="127.0.0.1") as server,
        aiohttp.ClientSession(
            base_url=str(server.make_url("/")), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as session,
    ):
        yield session


async def test_a_dead_letter_is_listed_without_secrets_and_a_replay_delivers_it(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)
    receiver_up = False

    async def down_until_fixed(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=200 if receiver_up else 500)

    async with receiving(down_until_fixed) as receiver:
        instance = webhook_instance(
            "inst-1",
            receiver.url,
            **{"event.notification.basic.username": "u", "event.notification.basic.password": "hook-pass"},
        )
        event = change("inst-1", 1)
        await produce(settings, [event])
        async with (
            delivering(settings, {"inst-1": instance}, registry) as deliverer,
            admin_api(deliverer.dead_letters, settings) as api,
        ):
            (stored,) = await dead_letters(settings, expect=1)
            schema_validator("dead-letter.schema.json").validate(stored.to_json())
            assert len(receiver.hits) == 4

            async with api.get("/instances/inst-1/deliveries", params={"status": "failed"}) as response:
                assert response.status == 200
                raw = await response.read()
            listing = orjson.loads(raw)
            assert listing["count"] == 1
            (shown,) = listing["deadLetters"]
            assert shown["eventId"] == event.id
            assert (shown["reason"], shown["attempts"], shown["lastStatus"]) == ("retries-exhausted", 4, 500)
            assert [h["status"] for h in shown["history"]] == [500] * 4
            assert "data" not in shown["event"]
            for secret in (b"s3cret", KEY.encode(), b"hook-pass", b"/hooks/in"):
                assert secret not in raw
            async with api.get("/instances/inst-1/deliveries", params={"limit": "5"}) as response:
                assert (await response.json())["deadLetters"] == listing["deadLetters"]
            async with api.get("/instances/inst-1/deliveries", params={"status": "all"}) as response:
                raw = await response.read()
            (failed,) = orjson.loads(raw)["deliveries"]
            assert (failed["webhookId"], failed["status"], failed["attempts"]) == (event.id, "failed", 4)
            assert [h["status"] for h in failed["history"]] == [500] * 4
            assert failed["nextRetryAt"] is None
            schema_validator("delivery.schema.json").validate(failed)
            for secret in (b"s3cret", KEY.encode(), b"hook-pass", b"/hooks/in"):
                assert secret not in raw

            receiver_up = True
            async with api.post(
                "/instances/inst-1/deliveries/replay", json={"ids": [event.id, "not-an-event"]}
            ) as response:
                assert response.status == 200
                assert await response.json() == {
                    "instanceId": "inst-1",
                    "replayed": 1,
                    "ids": [event.id],
                    "notFound": ["not-an-event"],
                }
            await wait_for(lambda: len(receiver.hits) == 5)
            async with api.get("/instances/inst-1/deliveries") as response:
                assert (await response.json())["count"] == 0

            async def delivered() -> bool:
                async with api.get("/instances/inst-1/deliveries", params={"status": "delivered"}) as r:
                    return bool((await r.json())["deliveries"])

            await wait_for(delivered)
            async with api.get("/instances/inst-1/deliveries", params={"status": "all"}) as response:
                (done,) = (await response.json())["deliveries"]
            # The replay starts a fresh count of attempts and keeps the history before it.
            assert (done["status"], done["attempts"]) == ("delivered", 1)
            assert [h["outcome"] for h in done["history"]] == ["failed"] * 4 + ["delivered"]
            assert done["history"][-1]["status"] == 200
            schema_validator("delivery.schema.json").validate(done)

    replayed = receiver.hits[-1]
    assert replayed.webhook_id == event.id
    assert sample(registry, "gateway_delivery_replays_total") == 1
    assert sample(registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx") == 1


async def test_the_routes_check_their_input_and_need_the_token(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)
    async with (
        delivering(settings, {}, registry) as deliverer,
        admin_api(deliverer.dead_letters, settings) as api,
    ):
        async with api.get("/instances/x/deliveries", params={"limit": "0"}) as response:
            assert response.status == 400
        async with api.get("/instances/x/deliveries", params={"status": "delivered,lost"}) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["path"] == "$.status"
        async with api.get("/instances/x/deliveries", params={"status": "all", "cursor": "!!"}) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["path"] == "$.cursor"
        async with api.get("/instances/x/deliveries", params={"status": "all"}) as response:
            assert await response.json() == {
                "instanceId": "x",
                "count": 0,
                "deliveries": [],
                "nextCursor": None,
            }
        async with api.post("/instances/x/deliveries/replay", json={"since": "yesterday"}) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["path"] == "$.since"
        async with api.post("/instances/x/deliveries/replay", json={}) as response:
            assert await response.json() == {"instanceId": "x", "replayed": 0, "ids": []}
        async with api.get("/instances/x/deliveries", headers={"Authorization": "Bearer no"}) as r:
            assert r.status == 401


async def test_the_history_pages_newest_first_and_shows_a_parked_retry(
    settings: Settings, registry: CollectorRegistry
) -> None:
    # The third retry waits 60 s in a retry tier: long enough to see it listed as retrying.
    settings = delivery_settings(settings, retry_schedule=[0.0, 60.0])
    events = [change("inst-1", n) for n in range(1, 6)]

    async def fails_the_first(_attempt: int, request: web.Request) -> web.StreamResponse:
        return web.Response(status=500 if request.headers.get("webhook-id") == events[0].id else 204)

    async with receiving(fails_the_first) as receiver:
        await produce(settings, events)
        async with (
            delivering(settings, {"inst-1": webhook_instance("inst-1", receiver.url)}, registry) as deliverer,
            admin_api(deliverer.dead_letters, settings) as api,
        ):

            async def listed(status: str, count: int) -> bool:
                async with api.get("/instances/inst-1/deliveries", params={"status": status}) as r:
                    return int((await r.json())["count"]) == count

            await wait_for(lambda: listed("delivered", 4))
            await wait_for(lambda: listed("retrying", 1))
            async with api.get("/instances/inst-1/deliveries", params={"status": "retrying"}) as r:
                (parked,) = (await r.json())["deliveries"]
            assert (parked["eventId"], parked["attempts"]) == (events[0].id, 2)
            assert parked["nextRetryAt"] > parked["at"]
            assert [h["status"] for h in parked["history"]] == [500, 500]
            schema_validator("delivery.schema.json").validate(parked)

            seen: list[str] = []
            pages = 0
            params = {"status": "delivered,retrying", "limit": "2"}
            while True:
                async with api.get("/instances/inst-1/deliveries", params=params) as r:
                    page = await r.json()
                pages += 1
                seen += [d["eventId"] for d in page["deliveries"]]
                if page["nextCursor"] is None:
                    break
                params = {**params, "cursor": page["nextCursor"]}
    assert pages == 3
    assert sorted(seen) == sorted(event.id for event in events)
