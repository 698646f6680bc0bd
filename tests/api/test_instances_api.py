"""The admin API: authentication, validation, masking, encryption at rest, live reconfiguration."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.runtime import RunningGateway, start_gateway
from gateway.settings import Settings
from gateway.sim import DEMO_USERS, Simulator
from tests.conftest import read_committed, seed_instance, wait_for
from tests.instances.seed_examples import SEED_RESOURCES
from tests.polling._support import create, only, polls

PASSWORD = next(iter(DEMO_USERS.values()))


def running(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gateway_pollers_running") or 0.0


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", "Basic dGVzdDp0ZXN0", "bearer test-admin-token"]
)
async def test_every_instance_route_needs_the_admin_token(
    gateway: RunningGateway, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    async with aiohttp.ClientSession(base_url=gateway.api_url, headers=headers) as session:
        for method, path in [("GET", "/instances"), ("POST", "/instances"), ("DELETE", "/instances/x")]:
            async with session.request(method, path, json={}) as response:
                assert response.status == 401, (method, path)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
        async with session.get("/healthz") as response:
            assert response.status == 200


async def test_an_invalid_body_is_refused_with_every_problem_and_its_path(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = seed_instance("2016", simulator)
    body["element"]["key"] = "salesforce"
    del body["configuration"]["event.poller.configuration"]["accounts"]["idField"]
    body["configuration"]["event.poller.refresh_interval"] = "0"
    async with api.post("/instances", json=body) as response:
        assert response.status == 400
        errors = {(e["path"], e["message"]) for e in (await response.json())["errors"]}
    paths = {path for path, _message in errors}
    assert "$.element.key" in paths
    assert "$.configuration['event.poller.configuration'].accounts.idField" in paths
    assert "$.configuration['event.poller.refresh_interval']" in paths
    async with api.post(
        "/instances", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["errors"][0]["path"] == "$"


async def test_secrets_are_masked_in_responses_and_encrypted_in_kafka(
    api: aiohttp.ClientSession, simulator: Simulator, settings: Settings
) -> None:
    body = seed_instance("2016", simulator)
    body["configuration"]["event.notification.signature.key"] = "signature-key-value"
    instance_id = await create(api, body)
    for path in ("/instances", f"/instances/{instance_id}"):
        async with api.get(path) as response:
            text = await response.text()
        assert PASSWORD not in text
        assert "signature-key-value" not in text
        assert '"user.password":"********"' in text
    stored = await read_committed(
        settings.kafka_bootstrap_servers, f"{settings.state_topic_prefix}.instances", expect=1
    )
    raw = b"".join(r.value or b"" for r in stored)
    assert instance_id.encode() in raw
    assert PASSWORD.encode() not in raw
    assert b"signature-key-value" not in raw


async def test_patch_reconfigures_the_running_pollers_and_keeps_masked_secrets(
    api: aiohttp.ClientSession, simulator: Simulator, registry: CollectorRegistry
) -> None:
    instance_id = await create(api, seed_instance("2016", simulator))
    await wait_for(lambda: running(registry) == 7)
    # A merge patch (RFC 7396): null removes a resource, so only contacts stays.
    poller: dict[str, Any] = {name: None for name in SEED_RESOURCES if name != "contacts"}
    patch = {"configuration": {"event.poller.configuration": poller, "user.password": "********"}}
    async with api.patch(f"/instances/{instance_id}", json=patch) as response:
        assert response.status == 200, await response.text()
    await wait_for(lambda: running(registry) == 1)
    # The masked password was not stored: the contacts poller still authenticates.
    await wait_for(lambda: polls(registry, "contacts") >= 2)
    assert polls(registry, "contacts", "failed") == 0


async def test_disabling_and_deleting_stop_the_pollers(
    api: aiohttp.ClientSession, simulator: Simulator, registry: CollectorRegistry
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: running(registry) == 1)
    patch = {"configuration": {"event.notification.enabled": "false"}}
    async with api.patch(f"/instances/{instance_id}", json=patch) as response:
        assert response.status == 200
    await wait_for(lambda: running(registry) == 0)
    async with api.delete(f"/instances/{instance_id}") as response:
        assert response.status == 204
    async with api.get(f"/instances/{instance_id}") as response:
        assert response.status == 404
    await wait_for(lambda: running(registry) == 0)


async def test_a_restarted_gateway_resumes_its_instances(
    settings: Settings, simulator: Simulator, registry: CollectorRegistry
) -> None:
    async with (
        start_gateway(settings, registry=registry) as first,
        aiohttp.ClientSession(
            base_url=first.api_url, headers={"Authorization": f"Bearer {first.admin_token}"}
        ) as session,
    ):
        instance_id = await create(session, only(seed_instance("2016", simulator), "accounts"))
    restarted_registry = CollectorRegistry()
    async with start_gateway(settings, registry=restarted_registry) as second:
        await wait_for(lambda: running(restarted_registry) == 1)
        async with (
            aiohttp.ClientSession(
                base_url=second.api_url, headers={"Authorization": f"Bearer {second.admin_token}"}
            ) as session,
            session.get(f"/instances/{instance_id}") as response,
        ):
            assert response.status == 200
            assert (await response.json())["name"] == "seed-2016"


@pytest.mark.parametrize(
    "callback",
    [
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest",
        "http://[::ffff:127.0.0.1]:8080/",
        "http://localhost/x",
    ],
)
async def test_a_callback_to_a_private_address_is_refused_when_saved(
    api: aiohttp.ClientSession, simulator: Simulator, callback: str
) -> None:
    body = seed_instance("2016", simulator)
    body["configuration"]["event.notification.callback.url"] = callback
    async with api.post("/instances", json=body) as response:
        assert response.status == 400
        (problem,) = (await response.json())["errors"]
    assert problem["path"] == "$.configuration['event.notification.callback.url']"
    assert "GATEWAY_CALLBACK_ALLOWED_NETWORKS" in problem["message"]


async def test_a_new_signature_key_keeps_the_previous_one_for_the_rotation(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = seed_instance("2016", simulator)
    body["configuration"]["event.notification.signature.key"] = "first-key"
    instance_id = await create(api, body)
    patch = {"configuration": {"event.notification.signature.key": "second-key"}}
    async with api.patch(f"/instances/{instance_id}", json=patch) as response:
        assert response.status == 200
        configuration = (await response.json())["configuration"]
    assert configuration["event.notification.signature.previous.key"] == "********"
    assert configuration["event.notification.signature.rotated.at"] > 0


async def test_a_refused_callback_is_told_with_the_bodys_other_problems(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = seed_instance("2016", simulator)
    body["configuration"]["event.notification.callback.url"] = "http://10.0.0.5/hook"
    del body["configuration"]["event.poller.configuration"]["accounts"]["idField"]
    async with api.post("/instances", json=body) as response:
        assert response.status == 400
        paths = {e["path"] for e in (await response.json())["errors"]}
    assert paths == {
        "$.configuration['event.notification.callback.url']",
        "$.configuration['event.poller.configuration'].accounts.idField",
    }
