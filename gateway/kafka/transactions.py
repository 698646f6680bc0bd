"""Transactional writes: a poll's events and its checkpoint commit together or not at all.

Each state partition has its own producer and transactional id, so that when the partition moves
to another replica the old owner is fenced (Kafka Connect's per-task transactional ids, KIP-618).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalOperation, KafkaError

from gateway.errors import PublishError
from gateway.metrics import KafkaMetrics

Headers = Sequence[tuple[str, bytes]]
_log = logging.getLogger(__name__)


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
        may_recover: Callable[[], bool] = lambda: True,
    ) -> None:
        self.transactional_id = transactional_id
        self._metrics = metrics
        self._bootstrap_servers = bootstrap_servers
        self._transaction_timeout_ms = transaction_timeout_ms
        self._producer = self._new_producer()
        self._broken = False  # the producer hit a fatal error; a new one replaces it before the next use
        # Replacing a fenced producer fences whoever fenced it: only the partition's owner may do that.
        self._may_recover = may_recover
        self._lock = asyncio.Lock()
        self._state = _State.NEW

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self.transactional_id,
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            compression_type="zstd",
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=4 * 1024 * 1024,
            transaction_timeout_ms=self._transaction_timeout_ms,
        )

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
            if self._broken:
                if not self._may_recover():
                    raise PublishError(
                        f"writer {self.transactional_id} was fenced and no longer owns its partition"
                    )
                await self._replace_producer()
            try:
                await self._producer.begin_transaction()
            except (KafkaError, AssertionError) as exc:
                # aiokafka asserts when its producer is in a fatal state: only a new producer can go on.
                self._broken = True
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
                # IllegalOperation (not a KafkaError): a send after the producer turned fatal mid-transaction.
                if isinstance(exc, KafkaError | IllegalOperation):
                    raise PublishError(f"transaction {self.transactional_id} failed: {exc}") from exc
                raise
            self._metrics.transactions.labels("committed").inc()
            self._metrics.commit_duration.observe(time.perf_counter() - started)

    async def _abort_quietly(self) -> None:
        # A fenced or broken producer cannot abort (aiokafka asserts on the state transition);
        # the broker aborts the transaction itself on fencing or timeout.
        try:
            await asyncio.shield(self._producer.abort_transaction())
        except (KafkaError, AssertionError):
            # Fenced (a newer epoch, such as the coordinator's after aborting a transaction that
            # outlived transaction_timeout_ms, e.g. through a long broker outage) or otherwise fatal:
            # this producer can never begin another transaction.
            self._broken = True

    async def _replace_producer(self) -> None:
        """A new producer under the same transactional id: starting it aborts whatever the old one left
        open, and the poll that failed is retried from the last committed checkpoint."""
        old, self._producer = self._producer, self._new_producer()
        with contextlib.suppress(KafkaError):
            await old.stop()
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise PublishError(f"cannot restart producer {self.transactional_id}: {exc}") from exc
        self._broken = False
        _log.warning("replaced the transactional producer %s after a fatal error", self.transactional_id)
