"""Transactional writes: a poll's events and its checkpoint commit together or not at all.

Each state partition has its own producer and transactional id, so that when the partition moves
to another replica the old owner is fenced (Kafka Connect's per-task transactional ids, KIP-618).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.errors import PublishError
from gateway.metrics import KafkaMetrics

Headers = Sequence[tuple[str, bytes]]


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Transaction:
    """Collects sends of one open transaction; their futures are awaited before the commit."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._pending: list[asyncio.Future[object]] = []

    async def send(
        self,
        topic: str,
        *,
        key: bytes,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        future = await self._producer.send(
            topic, value=value, key=key, headers=list(headers) if headers else None, partition=partition
        )
        self._pending.append(future)

    async def _delivered(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending)
            self._pending.clear()

    def _discard(self) -> None:
        # The transaction is being aborted: its sends' outcomes no longer matter, but must be retrieved.
        for future in self._pending:
            if future.done() and not future.cancelled():
                future.exception()
            else:
                future.cancel()
        self._pending.clear()


class PartitionWriter:
    """The transactional producer of one state partition. One transaction runs at a time."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        transactional_id: str,
        metrics: KafkaMetrics,
        transaction_timeout_ms: int = 300_000,
    ) -> None:
        self.transactional_id = transactional_id
        self._metrics = metrics
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=transactional_id,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            compression_type="zstd",
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=4 * 1024 * 1024,
            transaction_timeout_ms=transaction_timeout_ms,
        )
        self._lock = asyncio.Lock()
        self._state = _State.NEW

    async def __aenter__(self) -> PartitionWriter:
        if self._state is not _State.NEW:
            raise RuntimeError(f"writer {self.transactional_id} cannot be started twice")
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise PublishError(f"cannot start producer {self.transactional_id}: {exc}") from exc
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        await self._producer.stop()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Commit when the block exits normally; abort when it raises or is cancelled."""
        if self._state is not _State.OPEN:
            raise RuntimeError(f"writer {self.transactional_id} is {self._state.value}")
        async with self._lock:
            started = time.perf_counter()
            try:
                await self._producer.begin_transaction()
            except KafkaError as exc:
                raise PublishError(f"cannot begin transaction {self.transactional_id}: {exc}") from exc
            txn = Transaction(self._producer)
            try:
                yield txn
                await txn._delivered()
                await self._producer.commit_transaction()
            except BaseException as exc:
                txn._discard()
                await self._abort_quietly()
                self._metrics.transactions.labels("aborted").inc()
                if isinstance(exc, KafkaError):
                    raise PublishError(f"transaction {self.transactional_id} failed: {exc}") from exc
                raise
            self._metrics.transactions.labels("committed").inc()
            self._metrics.commit_duration.observe(time.perf_counter() - started)

    async def _abort_quietly(self) -> None:
        # A fenced or broken producer cannot abort (aiokafka asserts on the state transition);
        # the broker aborts the transaction itself on fencing or timeout.
        with contextlib.suppress(KafkaError, AssertionError):
            await asyncio.shield(self._producer.abort_transaction())
