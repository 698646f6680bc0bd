"""Kafka helpers of the benchmarks: topics, the last stable offset watched over time, committed reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from gateway.kafka.topics import TopicAdmin


async def create_topics(bootstrap: str, names: list[str], *, partitions: int) -> None:
    """Create topics the way the gateway creates its event topics (TopicAdmin.ensure)."""
    async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
        for name in names:
            await admin.ensure(name, partitions=partitions)


@contextlib.asynccontextmanager
async def scratch_prefix(bootstrap: str) -> AsyncIterator[str]:
    """A fresh topic prefix (`bench-<hex>`) for one run; every topic named with it is deleted after, so
    that repeated runs do not fill the broker's disk or slow its metadata."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        await _delete_topics(bootstrap, prefix)


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="event-gateway-bench")
    await client.start()
    try:
        names = [name for name in await client.list_topics() if name.startswith(prefix)]
        if names:
            with contextlib.suppress(KafkaError):
                await client.delete_topics(names)
    finally:
        await client.close()


@dataclass
class OffsetWatch:
    """Samples the last stable offsets (what a read_committed consumer can read up to) of some topics'
    partitions every `interval` seconds, and keeps each change with when it happened: after the request
    before it was sent, and before its own answer came."""

    bootstrap: str
    partitions: list[TopicPartition]
    interval: float = 0.01
    changes: list[tuple[float, float, dict[TopicPartition, int]]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def of_topic(cls, bootstrap: str, topic: str, partitions: int, *, interval: float) -> OffsetWatch:
        return cls(bootstrap, [TopicPartition(topic, p) for p in range(partitions)], interval)

    @property
    def latest(self) -> dict[TopicPartition, int]:
        return self.changes[-1][2] if self.changes else {}

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, isolation_level="read_committed")
        await consumer.start()
        try:
            previous: dict[TopicPartition, int] = {}
            previous_sent = time.time()
            while True:
                sent = time.time()
                lso = dict(await consumer.end_offsets(self.partitions))
                if lso != previous:
                    self.changes.append((previous_sent, time.time(), lso))
                    previous = lso
                    self._changed.set()
                previous_sent = sent
                await asyncio.sleep(self.interval)
        finally:
            await consumer.stop()

    async def wait_for(
        self, condition: Callable[[dict[TopicPartition, int]], bool], *, within: float
    ) -> float:
        """Wait until the offsets satisfy `condition`; the wall-clock time of the answer that did."""
        async with asyncio.timeout(within):
            while True:
                if self.changes and condition(self.latest):
                    return self.changes[-1][1]
                self._changed.clear()
                await self._changed.wait()

    def committed_between(self, tp: TopicPartition, offset: int) -> tuple[float, float]:
        """When `offset` became readable: not before the first returned value, not after the second."""
        for not_before, answered, lso in self.changes:
            if lso.get(tp, 0) > offset:
                return not_before, answered
        raise LookupError(f"offset {offset} of {tp} was never seen committed")


@contextlib.asynccontextmanager
async def watching(watch: OffsetWatch) -> AsyncIterator[OffsetWatch]:
    task = asyncio.create_task(watch.run(), name="offset-watch")
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_committed(
    bootstrap: str, topic: str, *, expect: int, within: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` a read_committed consumer sees, once `expect` arrived (or `within` passed),
    plus whatever comes within a short quiet period after, so that duplicates show."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    await _read_committed_batches(bootstrap, topic, records.extend, expect=expect, within=within)
    return records


async def count_committed(bootstrap: str, topic: str, *, expect: int, within: float) -> tuple[int, int]:
    """(records, distinct keys) of `topic` as a read_committed consumer sees them; keeps no values."""
    keys: set[bytes | None] = set()
    count = 0

    def tally(batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        nonlocal count
        count += len(batch)
        keys.update(record.key for record in batch)

    await _read_committed_batches(bootstrap, topic, tally, expect=expect, within=within)
    return count, len(keys)


async def _read_committed_batches(
    bootstrap: str,
    topic: str,
    take: Callable[[list[ConsumerRecord[bytes, bytes]]], None],
    *,
    expect: int,
    within: float,
) -> None:
    """Hand `take` each batch a read_committed consumer reads from the beginning of `topic` until
    `expect` records came (or `within` passed), then for a short quiet period more."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while seen < expect:
                    for batch in (await consumer.getmany(timeout_ms=200, max_records=50_000)).values():
                        seen += len(batch)
                        take(batch)
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            take(batch)
    finally:
        await consumer.stop()
