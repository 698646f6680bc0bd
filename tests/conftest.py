from __future__ import annotations

import asyncio
import inspect
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from gateway.runtime import RunningGateway, start_gateway
from gateway.settings import Settings
from gateway.sim import DEMO_CLIENTS, DEMO_USERS, Simulator
from tests.instances.seed_examples import seed_bodies

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real Kafka broker: the one named by GATEWAY_KAFKA_BOOTSTRAP_SERVERS, or the local one.

    Uses the same script as `make kafka-up`, which reuses a broker that already answers.
    """
    bootstrap = os.environ.get("GATEWAY_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    subprocess.run([str(ROOT / ".ci" / "kafka.sh"), "up"], check=True, timeout=600)
    return bootstrap


_SESSION_UNIQUES: list[str] = []


@pytest.fixture
def unique() -> str:
    """A fresh suffix for topic names and transactional ids, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:10]
    _SESSION_UNIQUES.append(suffix)
    return suffix


@pytest.fixture(scope="session", autouse=True)
async def _drop_test_topics(kafka_bootstrap: str) -> AsyncIterator[None]:
    """Delete the topics this session created, so a developer's broker does not fill up run after run."""
    yield
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if any(u in t for u in _SESSION_UNIQUES)]
        for start in range(0, len(ours), 100):
            await admin.delete_topics(ours[start : start + 100])
    finally:
        await admin.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def read_committed(
    bootstrap: str, topic: str, *, expect: int, within: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning as a read_committed consumer until `expect` records arrived,
    then for a short quiet period more, so that duplicates would show."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):
            while len(records) < expect:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def settings(kafka_bootstrap: str, unique: str) -> Settings:
    """Settings for one gateway under test: its own topics, ephemeral ports, loopback only."""
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"test-{unique}",
        state_topic_prefix=f"test-{unique}-gw",
        state_partitions=2,
        topic_partitions=1,
        api_host="127.0.0.1",
        api_port=0,
        metrics_port=0,
        admin_token=SecretStr(ADMIN_TOKEN),
        secret_key=SecretStr(SECRET_KEY),
        poll_overlap_seconds=5.0,
    )


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(users=DEMO_USERS, clients=DEMO_CLIENTS, seed=11) as sim:
        yield sim


def seed_instance(kind: str, sim: Simulator, *, refresh_minutes: float = 1 / 60) -> dict[str, Any]:
    """A seed example with its placeholders filled in to point at the simulator."""
    body = seed_bodies()[kind]
    user, password = next(iter(DEMO_USERS.items()))
    body["configuration"].update(
        {
            "user.username": user,
            "user.password": password,
            "dynamics.base.url": sim.base_url,
            "event.poller.refresh_interval": str(refresh_minutes),
        }
    )
    body["name"] = f"seed-{kind}"
    body["tags"] = ["test"]
    return body


async def wait_for(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], *, within: float = 20.0
) -> None:
    """Poll a condition until it holds; fail the test when it does not within `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def gateway(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[RunningGateway]:
    async with start_gateway(settings, registry=registry) as gateway:
        yield gateway


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as session:
        yield session


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after a test configures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kafka_level = logging.getLogger("aiokafka").level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(kafka_level)
