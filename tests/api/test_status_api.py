"""GET /instances/{id}/status: each resource's last poll, from the pollers of the answering process."""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.polling._support import create, only


async def _status(api: aiohttp.ClientSession, instance_id: str) -> dict[str, Any]:
    async with api.get(f"/instances/{instance_id}/status") as response:
        assert response.status == 200
        status: dict[str, Any] = await response.json()
        return status


async def test_each_resource_reports_its_last_poll(api: aiohttp.ClientSession, simulator: Simulator) -> None:
    body = seed_instance("2016", simulator)
    poller = body["configuration"]["event.poller.configuration"]
    body["configuration"]["event.poller.configuration"] = {k: poller[k] for k in ("accounts", "contacts")}
    instance_id = await create(api, body)

    async def polled() -> bool:
        resources = (await _status(api, instance_id))["resources"]
        return all(r["outcome"] == "ok" for r in resources.values())

    await wait_for(polled)
    status = await _status(api, instance_id)
    assert status["polledHere"] is True
    accounts = status["resources"]["accounts"]
    assert set(status["resources"]) == {"accounts", "contacts"}
    assert accounts["lastPollAt"].endswith("Z")
    assert accounts["durationSeconds"] >= 0
    assert accounts["checkpointAgeSeconds"] >= 0
    assert accounts["lastError"] is None
    async with api.get("/instances/nope/status") as response:
        assert response.status == 404


async def test_a_failing_resource_reports_its_error_without_the_secret(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = only(seed_instance("2016", simulator), "accounts")
    body["configuration"]["user.password"] = "wrong-password-value"
    instance_id = await create(api, body)

    async def failed() -> bool:
        return bool((await _status(api, instance_id))["resources"]["accounts"]["outcome"] == "failed")

    await wait_for(failed)
    accounts = (await _status(api, instance_id))["resources"]["accounts"]
    assert accounts["checkpointAgeSeconds"] is None
    assert "refused" in accounts["lastError"]["message"]
    assert "wrong-password-value" not in accounts["lastError"]["message"]
