from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import PublishError
from gateway.kafka.topics import TopicAdmin
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import KafkaMetrics
from tests.conftest import read_committed


class _Boom(Exception):
    pass


async def _send_then_fail(writer: TransactionalWriter, topic: str) -> None:
    async with writer.transaction() as txn:
        await txn.send(topic, key=b"k", value=b"aborted")
        raise _Boom


async def test_committed_writes_are_visible_and_aborted_ones_are_not(
    kafka_bootstrap: str, unique: str, registry: CollectorRegistry
) -> None:
    topic = f"test.txn.{unique}"
    async with TopicAdmin(bootstrap_servers=kafka_bootstrap, replication_factor=1) as admin:
        await admin.ensure(topic, partitions=1)
    metrics = KafkaMetrics(registry)
    async with TransactionalWriter(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"test-{unique}", metrics=metrics
    ) as writer:
        async with writer.transaction() as txn:
            await txn.send(topic, key=b"k", value=b"committed")
        with pytest.raises(_Boom):
            await _send_then_fail(writer, topic)
    records = await read_committed(kafka_bootstrap, topic, expect=1)
    assert [r.value for r in records] == [b"committed"]
    assert registry.get_sample_value("gateway_kafka_transactions_total", {"outcome": "committed"}) == 1
    assert registry.get_sample_value("gateway_kafka_transactions_total", {"outcome": "aborted"}) == 1


async def test_a_second_writer_with_the_same_transactional_id_fences_the_first(
    kafka_bootstrap: str, unique: str, registry: CollectorRegistry
) -> None:
    topic = f"test.fence.{unique}"
    async with TopicAdmin(bootstrap_servers=kafka_bootstrap, replication_factor=1) as admin:
        await admin.ensure(topic, partitions=1)
    metrics = KafkaMetrics(registry)
    txn_id = f"test-fence-{unique}"
    async with (
        TransactionalWriter(
            bootstrap_servers=kafka_bootstrap, transactional_id=txn_id, metrics=metrics
        ) as zombie,
        TransactionalWriter(
            bootstrap_servers=kafka_bootstrap, transactional_id=txn_id, metrics=metrics
        ) as owner,
    ):
        async with owner.transaction() as txn:
            await txn.send(topic, key=b"k", value=b"owner")
        with pytest.raises(PublishError, match=r"[Ff]enced"):
            async with zombie.transaction() as txn:
                await txn.send(topic, key=b"k", value=b"zombie")
    records = await read_committed(kafka_bootstrap, topic, expect=1)
    assert [r.value for r in records] == [b"owner"]
