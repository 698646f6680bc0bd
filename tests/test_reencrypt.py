"""Instances stored in an older format or with a former key, against the real instances topic: they
load, the next save encrypts them, and `event-gateway reencrypt` rewrites them with the current key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from gateway.errors import SecretKeyMismatch, TaskCrashed
from gateway.instances import SecretBox
from gateway.instances.secrets import CALLBACK_HEADERS
from gateway.kafka.compacted import read_table
from gateway.kafka.partitioning import state_partition
from gateway.kafka.topics import TopicAdmin
from gateway.runtime import Role, start_gateway
from gateway.settings import Settings
from tests.conftest import SECRET_KEY
from tests.instances.seed_examples import seed_bodies

OLD_KEY = "the-key-before-the-rotation-0123456789abcdef"
CALLBACK = "event.notification.callback.url"


def _body(token: str) -> dict[str, Any]:
    """A seed instance whose every kind of secret holds `token`; not polled, so no CRM is needed."""
    body = seed_bodies()["2016"]
    body["configuration"].update(
        {
            "user.username": "someone@example.com",
            "user.password": f"password-{token}",
            "event.notification.enabled": "false",
            "event.notification.signature.key": f"signature-{token}",
            CALLBACK: f"https://hooks.example.com/in?token=callback-{token}",
            CALLBACK_HEADERS: {"X-Api-Key": f"header-{token}"},
        }
    )
    body["name"] = f"stored-{token[:8]}"
    return body


def _old_format(body: dict[str, Any], key: str) -> dict[str, Any]:
    """What the gateway stored before callback URLs and headers were encrypted: only passwords and keys."""
    stored = SecretBox(key).encrypt_body(body)
    for name in (CALLBACK, CALLBACK_HEADERS):
        stored["configuration"][name] = body["configuration"][name]
    return stored


def _instances_topic(settings: Settings) -> str:
    return f"{settings.state_topic_prefix}.instances"


async def _write(settings: Settings, records: dict[str, dict[str, Any]]) -> None:
    """Store bodies as they are, bypassing the gateway, as an older version would have."""
    async with TopicAdmin(bootstrap_servers=settings.kafka_bootstrap_servers, replication_factor=1) as admin:
        await admin.ensure(_instances_topic(settings), partitions=settings.state_partitions, compacted=True)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for instance_id, body in records.items():
            await producer.send_and_wait(
                _instances_topic(settings),
                key=instance_id.encode(),
                value=orjson.dumps(body),
                partition=state_partition(instance_id, settings.state_partitions),
            )
    finally:
        await producer.stop()


async def _stored(settings: Settings) -> dict[str, bytes]:
    partitions = range(settings.state_partitions)
    return await read_table(settings.kafka_bootstrap_servers, _instances_topic(settings), partitions)


@asynccontextmanager
async def _api(settings: Settings, role: Role = "all") -> AsyncIterator[aiohttp.ClientSession]:
    async with (
        start_gateway(settings, role=role, registry=CollectorRegistry()) as gateway,
        aiohttp.ClientSession(
            base_url=gateway.api_url, headers={"Authorization": f"Bearer {gateway.admin_token}"}
        ) as session,
    ):
        yield session


def _reencrypt(settings: Settings, *, key: str, previous: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEWAY_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "GATEWAY_TOPIC_PREFIX": settings.topic_prefix,
        "GATEWAY_STATE_TOPIC_PREFIX": settings.state_topic_prefix,
        "GATEWAY_STATE_PARTITIONS": str(settings.state_partitions),
        "GATEWAY_SECRET_KEY": key,
        "GATEWAY_SECRET_KEY_PREVIOUS": previous,
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "reencrypt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_an_instance_stored_in_the_old_format_loads_and_its_next_save_encrypts_it(
    settings: Settings,
) -> None:
    token = uuid.uuid4().hex
    instance_id = f"old-{token[:8]}"
    body = {**_body(token), "id": instance_id}
    await _write(settings, {instance_id: _old_format(body, SECRET_KEY)})
    assert f"callback-{token}".encode() in (await _stored(settings))[instance_id]

    async with _api(settings) as api:
        async with api.get(f"/instances/{instance_id}") as response:
            assert response.status == 200
            shown = await response.text()
        assert token not in shown
        configuration = orjson.loads(shown)["configuration"]
        assert configuration[CALLBACK] == "https://hooks.example.com/********"
        assert configuration[CALLBACK_HEADERS] == {"X-Api-Key": "********"}
        async with api.patch(f"/instances/{instance_id}", json={"name": "renamed"}) as response:
            assert response.status == 200, await response.text()

    raw = (await _stored(settings))[instance_id]
    assert token not in raw.decode()
    box = SecretBox(SECRET_KEY)
    assert box.is_current(orjson.loads(raw))
    saved = box.decrypt_body(orjson.loads(raw))
    assert saved["name"] == "renamed"
    assert saved["configuration"] == body["configuration"]


async def test_a_rotated_key_decrypts_through_the_previous_one_until_reencrypt_rewrites_everything(
    settings: Settings,
) -> None:
    tokens = {f"{name}-{uuid.uuid4().hex[:8]}": uuid.uuid4().hex for name in ("old-key", "old-format", "now")}
    bodies = {instance_id: _body(token) for instance_id, token in tokens.items()}
    old_key_id, old_format_id, current_id = bodies
    await _write(
        settings,
        {
            old_key_id: SecretBox(OLD_KEY).encrypt_body(bodies[old_key_id]),
            old_format_id: _old_format(bodies[old_format_id], OLD_KEY),
            current_id: SecretBox(SECRET_KEY).encrypt_body(bodies[current_id]),
        },
    )
    before = await _stored(settings)

    # The new key alone cannot read what the old one wrote, and says which instance, not what is in it.
    with pytest.raises(SecretKeyMismatch) as caught:
        async with _api(settings, role="api"):
            pass
    assert old_key_id in str(caught.value) or old_format_id in str(caught.value)
    assert not any(token in str(caught.value) for token in tokens.values())

    rotating = settings.model_copy(update={"secret_key_previous": [SecretStr(OLD_KEY)]})
    async with _api(rotating, role="api") as api, api.get(f"/instances/{old_key_id}") as response:
        assert response.status == 200
        assert (await response.json())["name"] == bodies[old_key_id]["name"]

    done = _reencrypt(settings, key=SECRET_KEY, previous=OLD_KEY)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "re-encrypted 2 of 3 stored instances with GATEWAY_SECRET_KEY\n"

    after = await _stored(settings)
    assert after[current_id] == before[current_id]  # already current: not written again
    box = SecretBox(SECRET_KEY)
    for instance_id, body in bodies.items():
        assert box.is_current(orjson.loads(after[instance_id]))
        assert box.decrypt_body(orjson.loads(after[instance_id])) == body
        assert tokens[instance_id] not in after[instance_id].decode()
    with pytest.raises(SecretKeyMismatch):
        SecretBox(OLD_KEY).decrypt_body(orjson.loads(after[old_key_id]))

    again = _reencrypt(settings, key=SECRET_KEY)
    assert again.stdout == "re-encrypted 0 of 3 stored instances with GATEWAY_SECRET_KEY\n"
    async with _api(settings, role="api") as api, api.get("/instances") as response:
        names = sorted(shown["name"] for shown in await response.json())
    assert names == sorted(body["name"] for body in bodies.values())


async def test_reencrypt_with_keys_that_decrypt_nothing_rewrites_nothing(settings: Settings) -> None:
    token = uuid.uuid4().hex
    instance_id = f"lost-{token[:8]}"
    await _write(settings, {instance_id: SecretBox(OLD_KEY).encrypt_body(_body(token))})
    before = await _stored(settings)

    done = _reencrypt(settings, key=SECRET_KEY, previous="another-key-that-is-not-it-0123456789")
    assert done.returncode == 2
    assert instance_id in done.stderr
    assert "GATEWAY_SECRET_KEY_PREVIOUS" in done.stderr
    assert token not in done.stderr + done.stdout
    assert await _stored(settings) == before


async def test_a_running_replica_that_meets_a_key_it_lacks_stops(settings: Settings) -> None:
    """What the README's two-restart rotation avoids: a replica left idle on unreadable instances."""
    token = uuid.uuid4().hex
    async with start_gateway(settings, role="api", registry=CollectorRegistry()) as gateway:
        await _write(settings, {f"new-key-{token[:8]}": SecretBox(OLD_KEY).encrypt_body(_body(token))})
        with pytest.raises(TaskCrashed) as caught:
            async with asyncio.timeout(30):
                await gateway.failure()
    assert caught.value.task.startswith("tail-")
    assert isinstance(caught.value.__cause__, SecretKeyMismatch)
    assert token not in str(caught.value)
