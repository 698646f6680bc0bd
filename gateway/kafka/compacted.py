"""A compacted topic read as a table: the latest value per key, kept current by a tail task."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.tasks import VitalTask, Watchdog

logger = logging.getLogger(__name__)

ChangeListener = Callable[[str, bytes | None], Awaitable[None]]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


async def read_to_end(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> dict[str, bytes]:
    """Read the given partitions from the beginning to their current end: the latest value per key.

    The consumer must be started, assigned these partitions and read_committed.
    """
    wanted = list(partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
    await consumer.seek_to_beginning(*wanted)
    table: dict[str, bytes] = {}
    pending = {tp for tp in wanted if ends[tp] > 0}
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=500)
        for records in batches.values():
            for record in records:
                _apply(table, record.key, record.value)
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    return table


async def read_table(bootstrap_servers: str, topic: str, partitions: Iterable[int]) -> dict[str, bytes]:
    """The latest committed value per key of some partitions of a compacted topic, read once."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        # Without it, the default reset to the end races the seek to the beginning.
        auto_offset_reset="earliest",
        client_id=f"event-gateway-read-{topic}",
    )
    await consumer.start()
    try:
        wanted = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(wanted)
        return await read_to_end(consumer, wanted)
    finally:
        await consumer.stop()


def _apply(table: dict[str, bytes], key: bytes | None, value: bytes | None) -> None:
    if key is None:
        return
    if value is None:
        table.pop(key.decode(), None)
    else:
        table[key.decode()] = value


class CompactedTopicTable:
    """Reads a whole compacted topic at start, then tails it, calling `listener` for each change.

    `wait_until(partition, offset)` gives read-your-writes to whoever produced that offset. The tail
    is vital to `watchdog`: a table that stopped following its topic serves stale values forever.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        listener: ChangeListener,
        watchdog: Watchdog,
    ) -> None:
        self._topic = topic
        self._watchdog = watchdog
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._listener = listener
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"event-gateway-table-{topic}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        self._table: dict[str, bytes] = {}
        self._positions: dict[int, int] = {}
        self._advanced = asyncio.Condition()
        self._task: VitalTask | None = None
        self._state = _State.NEW

    @property
    def table(self) -> dict[str, bytes]:
        return self._table

    async def __aenter__(self) -> CompactedTopicTable:
        if self._state is not _State.NEW:
            raise RuntimeError(f"table of {self._topic} cannot be started twice")
        await self._consumer.start()
        try:
            await self._load()
        except BaseException:  # the listener refused a record, say, or Kafka failed: close the consumer
            self._state = _State.CLOSED
            await self._consumer.stop()
            raise
        self._task = self._watchdog.start(self._tail, name=f"tail-{self._topic}")
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        if self._task is not None:
            await self._task.stop()
        await self._consumer.stop()

    async def _load(self) -> None:
        partitions = self._partitions
        self._consumer.assign(partitions)
        self._table = await read_to_end(self._consumer, partitions)
        for key, value in self._table.items():
            await self._listener(key, value)
        for tp in partitions:
            self._positions[tp.partition] = await self._consumer.position(tp)

    async def wait_until(self, partition: int, offset: int) -> None:
        """Return once the record at `offset` of `partition` has been applied; callers bound the wait."""
        async with self._advanced:
            await self._advanced.wait_for(lambda: self._positions.get(partition, 0) > offset)

    async def _tail(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    _apply(self._table, record.key, record.value)
                    if record.key is not None:
                        await self._listener(record.key.decode(), record.value)
                self._positions[tp.partition] = await self._consumer.position(tp)
            # Transaction markers move positions without yielding records; record those too.
            for tp in self._consumer.assignment():
                self._positions[tp.partition] = await self._consumer.position(tp)
            async with self._advanced:
                self._advanced.notify_all()
