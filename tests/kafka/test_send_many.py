"""Transaction.send_many: each record on the partition the default partitioner picks for its key, in order
with the transaction's other sends, committed or aborted with the transaction."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from aiokafka.admin import NewTopic
from aiokafka.partitioner import murmur2
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.errors import RecordTooLarge
from gateway.kafka.topics import TopicAdmin
from gateway.kafka.transactions import EventRecord, TransactionalWriter, _murmur2
from gateway.metrics import KafkaMetrics
from tests.conftest import read_committed


class _Boom(Exception):
    pass


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert _murmur2(data) == murmur2(data)


async def _send_many_then_fail(writer: TransactionalWriter, topic: str) -> None:
    async with writer.transaction() as txn:
        await txn.send_many(topic, _records(50))
        raise _Boom


def _records(count: int, *, size: int = 100) -> list[EventRecord]:
    return [
        (f"obj-{n % 40}".encode(), f"{n}:".encode() + b"x" * size, [("n", str(n).encode())])
        for n in range(count)
    ]


async def _topics(bootstrap: str, *names: str) -> None:
    async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
        for name in names:
            await admin.ensure(name, partitions=3)


def _writer(bootstrap: str, unique: str, registry: CollectorRegistry) -> TransactionalWriter:
    return TransactionalWriter(
        bootstrap_servers=bootstrap, transactional_id=f"test-many-{unique}", metrics=KafkaMetrics(registry)
    )


async def test_records_go_where_send_puts_them_and_keep_their_order(
    kafka_bootstrap: str, unique: str, registry: CollectorRegistry
) -> None:
    batched, single = f"test.many.{unique}", f"test.one.{unique}"
    await _topics(kafka_bootstrap, batched, single)
    # Large enough that each partition needs several batches of 512 KiB.
    records = _records(300, size=20_000)
    async with _writer(kafka_bootstrap, unique, registry) as writer, writer.transaction() as txn:
        await txn.send_many(batched, records[:150])
        await txn.send(batched, key=b"obj-7", value=b"between")  # after what send_many queued
        await txn.send_many(batched, records[150:])
        for key, value, headers in records:
            await txn.send(single, key=key, value=value, headers=headers)
    got = await read_committed(kafka_bootstrap, batched, expect=301)
    reference = await read_committed(kafka_bootstrap, single, expect=300)
    assert len(got) == 301
    placed = {record.key: record.partition for record in reference}
    assert all(record.partition == placed[record.key] for record in got)
    values: dict[bytes | None, list[bytes]] = defaultdict(list)
    for record in sorted(got, key=lambda r: (r.partition, r.offset)):
        values[record.key].append(record.value or b"")
    expected: dict[bytes | None, list[bytes]] = defaultdict(list)
    for key, value, _headers in records[:150]:
        expected[key].append(value)
    expected[b"obj-7"].append(b"between")
    for key, value, _headers in records[150:]:
        expected[key].append(value)
    assert values == expected
    for record in got:
        if record.value != b"between":
            assert dict(record.headers)["n"] == (record.value or b"").split(b":")[0]


async def test_an_aborted_transaction_sends_none_of_its_batches(
    kafka_bootstrap: str, unique: str, registry: CollectorRegistry
) -> None:
    topic = f"test.many-abort.{unique}"
    await _topics(kafka_bootstrap, topic)
    async with _writer(kafka_bootstrap, unique, registry) as writer:
        with pytest.raises(_Boom):
            await _send_many_then_fail(writer, topic)
        async with writer.transaction() as txn:
            await txn.send_many(topic, [(b"k", b"kept", [])])
    assert [r.value for r in await read_committed(kafka_bootstrap, topic, expect=1)] == [b"kept"]


async def _send_many(writer: TransactionalWriter, topic: str, value: bytes) -> None:
    async with writer.transaction() as txn:
        await txn.send_many(topic, [(b"k", value, [])])


async def _send(writer: TransactionalWriter, topic: str, value: bytes) -> None:
    async with writer.transaction() as txn:
        await txn.send(topic, key=b"k", value=value)


async def test_a_record_larger_than_a_request_fails_the_transaction(
    kafka_bootstrap: str, unique: str, registry: CollectorRegistry
) -> None:
    topic = f"test.many-large.{unique}"
    await _topics(kafka_bootstrap, topic)
    async with _writer(kafka_bootstrap, unique, registry) as writer:
        for send in (_send_many, _send):
            with pytest.raises(
                RecordTooLarge, match=f"for topic '{topic}' is over the limit of 4194304"
            ) as caught:
                await send(writer, topic, b"x" * (5 * 1024 * 1024))
            assert (caught.value.topic, caught.value.limit, caught.value.retriable) == (
                topic,
                4 * 1024 * 1024,
                False,
            )
            assert caught.value.size > 5 * 1024 * 1024
        async with writer.transaction() as txn:  # the writer goes on
            await txn.send_many(topic, [(b"k", b"small", [])])
    assert [r.value for r in await read_committed(kafka_bootstrap, topic, expect=1)] == [b"small"]


async def test_a_batch_the_broker_refuses_as_too_large_fails_with_the_topic_size_and_limit(
    kafka_bootstrap: str, unique: str, registry: CollectorRegistry
) -> None:
    """Under the producer's 4 MiB, over the topic's max.message.bytes: the broker refuses it at the commit."""
    topic = f"test.many-refused.{unique}"
    async with TopicAdmin(bootstrap_servers=kafka_bootstrap, replication_factor=1) as admin:
        await admin._client.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": "20000"},
                )
            ]
        )
        assert await admin.max_message_bytes(topic) == 20_000
    incompressible = os.urandom(60_000)
    async with _writer(kafka_bootstrap, unique, registry) as writer:
        for send in (_send_many, _send):
            with pytest.raises(RecordTooLarge, match=r"over the broker's max\.message\.bytes") as caught:
                await send(writer, topic, incompressible)
            assert (caught.value.topic, caught.value.limit) == (topic, None)
            assert caught.value.size >= 60_000
        async with writer.transaction() as txn:
            await txn.send(topic, key=b"k", value=b"small")
    assert [r.value for r in await read_committed(kafka_bootstrap, topic, expect=1)] == [b"small"]
