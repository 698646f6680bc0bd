"""/instances/{id}/subscriptions: create, read, change and remove subscriptions, secrets masked in
answers and encrypted in Kafka, problems told at their path inside the subscription."""

from __future__ import annotations

import aiohttp

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import read_committed, seed_instance
from tests.polling._support import create, only

URL_KEY = "event.notification.callback.url"
KEY = "event.notification.signature.key"


async def test_a_subscription_is_created_read_changed_and_removed(
    api: aiohttp.ClientSession, simulator: Simulator, settings: Settings
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    base = f"/instances/{instance_id}/subscriptions"
    given = {
        "name": "CRM sync",
        "eventTypes": ["UPDATED"],
        "changedColumns": ["name"],
        "configuration": {
            URL_KEY: "https://hooks.example.com/in?token=sub-token-1",
            KEY: "sub-signing-key-1",
        },
    }
    async with api.post(base, json=given) as response:
        assert response.status == 201
        created = await response.json()
    subscription_id = created["id"]
    assert created["configuration"] == {URL_KEY: "https://hooks.example.com/********", KEY: "********"}

    async with api.patch(f"{base}/{subscription_id}", json={**created, "enabled": False}) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["enabled"] is False
    async with api.get(base) as response:
        [listed] = (await response.json())["subscriptions"]
    assert (listed["id"], listed["name"], listed["enabled"]) == (subscription_id, "CRM sync", False)

    stored = await read_committed(
        settings.kafka_bootstrap_servers, f"{settings.state_topic_prefix}.instances", expect=3
    )
    raw = b"".join(r.value or b"" for r in stored)
    assert subscription_id.encode() in raw
    assert b"sub-token-1" not in raw
    assert b"sub-signing-key-1" not in raw

    async with api.delete(f"{base}/{subscription_id}") as response:
        assert response.status == 204
    async with api.get(f"{base}/{subscription_id}") as response:
        assert response.status == 404


async def test_a_bad_subscription_is_refused_at_its_paths(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    base = f"/instances/{instance_id}/subscriptions"
    bad = {"eventTypes": ["MERGED"], "configuration": {URL_KEY: "http://10.0.0.1/hook"}}
    async with api.post(base, json=bad) as response:
        assert response.status == 400
        problems = {p["path"]: p["message"] for p in (await response.json())["errors"]}
    assert problems == {"$.eventTypes[0]": "must be CREATED, UPDATED or DELETED"}

    async with api.post(base, json={"configuration": {URL_KEY: "http://10.0.0.1/hook"}}) as response:
        assert response.status == 400
        [problem] = (await response.json())["errors"]
    assert problem["path"] == f"$.configuration['{URL_KEY}']"
    assert "10.0.0.1" in problem["message"]
    async with api.get(base) as response:
        assert (await response.json())["subscriptions"] == []
