from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real Kafka broker: the one named by GATEWAY_KAFKA_BOOTSTRAP_SERVERS, or the local one.

    Uses the same script as `make kafka-up`, which reuses a broker that already answers.
    """
    bootstrap = os.environ.get("GATEWAY_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    subprocess.run([str(ROOT / ".ci" / "kafka.sh"), "up"], check=True, timeout=600)
    return bootstrap


@pytest.fixture
def unique() -> str:
    """A fresh suffix for topic names and transactional ids, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


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
