"""Transactional writes: what belongs together commits together or not at all.

Pollers write a poll's events with its checkpoint; each state partition has its own writer and
transactional id, so that when the partition moves to another replica the old owner is fenced
(Kafka Connect's per-task transactional ids, KIP-618). Deliverers write parked retries and dead
letters with the consumer offsets of the events they finish, under one transactional id per
delivery partition for the same reason (delivery/fencing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import Histogram

from gateway.errors import PublishError, RecordTooLarge
from gateway.metrics import KafkaMetrics

Headers = Sequence[tuple[str, bytes]]
EventRecord = tuple[bytes, bytes, Headers]  # key, value, headers of an event: never a tombstone
StateRecord = tuple[bytes, bytes | None, Headers]  # a record of a compacted topic: None is a tombstone
_log = logging.getLogger(__name__)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Transaction:
    """Collects sends of one open transaction; their futures are awaited before the commit.

    The produce latency is sampled on the first send only: one callback per transaction, none per record.
    A record over a size limit, the producer's or the broker's, fails the transaction with RecordTooLarge.
    """

    def __init__(self, producer: AIOKafkaProducer, latency: Histogram | None = None) -> None:
        self._producer = producer
        self._pending: list[_Pending] = []
        self._latency = latency
        self._batches: dict[tuple[str, int], Any] = {}  # send_many's open BatchBuilders
        self._partitions: dict[str, list[int]] = {}
        # The broker refused a batch: the idempotent producer counted its sequence numbers anyway, and
        # its next transaction would fail with OutOfOrderSequenceNumber (seen with aiokafka 0.14).
        self._refused = False

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        if self._batches:  # what send_many queued goes first, in order
            await self._flush()
        sampled = self._latency
        self._latency = None
        started = time.perf_counter() if sampled is not None else 0.0
        listed = list(headers) if headers else None
        try:
            future = await self._producer.send(
                topic, value=value, key=key, headers=listed, partition=partition
            )
        except MessageSizeTooLargeError as exc:
            raise RecordTooLarge(
                topic=topic, size=_size(key, value, listed), limit=_MAX_REQUEST_BYTES
            ) from exc
        if sampled is not None:
            future.add_done_callback(partial(_observe_ack, sampled, started))
        self._pending.append(_Pending(future, topic, len(key or b"") + len(value or b"")))

    async def send_many(
        self, topic: str, records: Iterable[StateRecord], *, partition: int | None = None
    ) -> None:
        """Send keyed records `(key, value, headers)`, each to `partition` or else to the partition the
        default partitioner picks for its key (murmur2), like `send` but in batches built here: no
        future, no partitioner call and no accumulator lookup per record, which makes a large poll's
        produce several times cheaper. A value of None is a tombstone. The last batches go out when
        the transaction commits or another send comes."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        count = len(partitions)
        batches = self._batches
        producer = self._producer
        for key, value, headers in records:
            if len(key) + len(value or b"") > _LARGE_RECORD:
                _check_size(topic, key, value, headers)
            if partition is None:
                partition_of_key = partitions[(_murmur2(key) & 0x7FFFFFFF) % count]
            else:
                partition_of_key = partition
            batch = batches.get((topic, partition_of_key))
            if batch is None:
                batch = batches[(topic, partition_of_key)] = producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                del batches[(topic, partition_of_key)]
                await self._submit(topic, partition_of_key, batch)
                batch = batches[(topic, partition_of_key)] = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value, headers=headers)  # a first one fits

    async def _submit(self, topic: str, partition: int, batch: Any) -> None:
        batch.close()  # a closed batch is sent without lingering
        size = batch.size()
        sampled = self._latency
        self._latency = None
        started = time.perf_counter() if sampled is not None else 0.0
        future = await self._producer.send_batch(batch, topic, partition=partition)
        if sampled is not None:
            future.add_done_callback(partial(_observe_ack, sampled, started))
        self._pending.append(_Pending(future, topic, size))

    async def _flush(self) -> None:
        batches, self._batches = self._batches, {}
        for (topic, partition), batch in batches.items():
            await self._submit(topic, partition, batch)

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        """Commit these consumer offsets of `group_id` with the transaction (consume-transform-produce)."""
        await self._producer.send_offsets_to_transaction(dict(offsets), group_id)

    async def _delivered(self) -> None:
        await self._flush()
        if not self._pending:
            return
        outcomes = await asyncio.gather(*(p.future for p in self._pending), return_exceptions=True)
        for pending, outcome in zip(self._pending, outcomes, strict=True):
            if isinstance(outcome, MessageSizeTooLargeError):  # the broker's max.message.bytes
                self._refused = True
                raise RecordTooLarge(topic=pending.topic, size=pending.size, limit=None) from outcome
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        self._pending.clear()

    def _discard(self) -> None:
        # The transaction is being aborted: its sends' outcomes no longer matter, but must be retrieved.
        self._batches.clear()
        for future in (p.future for p in self._pending):
            if future.done() and not future.cancelled():
                future.exception()
            else:
                future.cancel()
        self._pending.clear()


# How long a cancelled transaction waits for its abort: milliseconds on a live broker, forever on a
# dead one, and the cancelling caller (a shutdown, a revocation) has a bound of its own to keep.
_ABORT_PATIENCE_SECONDS = 1.0
_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # the producer's max_request_size
_LARGE_RECORD = _MAX_REQUEST_BYTES // 2  # below this, a record needs no exact size check
_M = 0x5BD1E995
_WORDS = [struct.Struct(f"<{n}I") for n in range(64)]


@dataclass(frozen=True, slots=True)
class _Pending:
    """A send awaited before the commit: a record, or a batch of `send_many`, of `size` bytes."""

    future: asyncio.Future[object]
    topic: str
    size: int


def _size(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or ())))


def _check_size(topic: str, key: bytes, value: bytes | None, headers: Headers) -> None:
    """What `AIOKafkaProducer.send` checks before it queues a record."""
    size = _size(key, value, headers)
    if size > _MAX_REQUEST_BYTES:
        raise RecordTooLarge(topic=topic, size=size, limit=_MAX_REQUEST_BYTES)


def _murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java's `Utils.murmur2`, aiokafka's `partitioner.murmur2`), reading four bytes at
    a time: half the cost of aiokafka's, which reads one byte at a time."""
    length = len(data)
    h = 0x9747B28C ^ length
    blocks = length >> 2
    words = _WORDS[blocks] if blocks < len(_WORDS) else struct.Struct(f"<{blocks}I")
    for k in words.unpack_from(data):
        k = (k * _M) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * _M) ^ (k * _M)) & 0xFFFFFFFF
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def _observe_ack(latency: Histogram, started: float, future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is None:
        latency.observe(time.perf_counter() - started)


async def _stop(producer: AIOKafkaProducer, *, broken: bool) -> None:
    """Stop a producer. aiokafka's stop waits for the transaction requests in flight, and one that
    looks for its coordinator while the broker is gone looks forever: a broken producer's (its
    transaction given up, see `_abort_quietly`) are cancelled first. aiokafka has no call for this."""
    sender = producer._sender
    if broken:
        for task in asyncio.all_tasks():
            coroutine = task.get_coro()
            frame = getattr(coroutine, "cr_frame", None)
            name = getattr(coroutine, "__qualname__", "")
            if frame is not None and name.startswith("Sender._do_") and frame.f_locals.get("self") is sender:
                task.cancel()
    try:
        await producer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        await producer.client.close()  # the sender ended cancelled, by the cancellations above


class TransactionalWriter:
    """A transactional producer; one transaction runs at a time. A producer that hits a fatal error
    is replaced before the next transaction, when `may_recover()` (if given) says it still may."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        transactional_id: str,
        metrics: KafkaMetrics,
        transaction_timeout_ms: int = 300_000,
        may_recover: Callable[[], Awaitable[bool]] | None = None,
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
            max_request_size=_MAX_REQUEST_BYTES,
            transaction_timeout_ms=self._transaction_timeout_ms,
        )

    @property
    def broken(self) -> bool:
        """Whether the producer hit a fatal error, such as being fenced by a newer producer of its id:
        the next transaction replaces it, if `may_recover` allows, or fails."""
        return self._broken

    async def __aenter__(self) -> TransactionalWriter:
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
        await _stop(self._producer, broken=self._broken)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Commit when the block exits normally; abort when it raises or is cancelled."""
        if self._state is not _State.OPEN:
            raise RuntimeError(f"writer {self.transactional_id} is {self._state.value}")
        async with self._lock:
            started = time.perf_counter()
            if self._broken:
                if self._may_recover is not None and not await self._may_recover():
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
            txn = Transaction(self._producer, self._metrics.produce_latency)
            try:
                yield txn
                await txn._delivered()
                await self._producer.commit_transaction()
            except BaseException as exc:
                txn._discard()
                await self._abort_quietly(
                    patience=_ABORT_PATIENCE_SECONDS if isinstance(exc, asyncio.CancelledError) else None
                )
                self._broken = self._broken or txn._refused
                self._metrics.transactions.labels("aborted").inc()
                # IllegalOperation (not a KafkaError): a send after the producer turned fatal mid-transaction.
                if isinstance(exc, KafkaError | IllegalOperation):
                    raise PublishError(f"transaction {self.transactional_id} failed: {exc}") from exc
                raise
            self._metrics.transactions.labels("committed").inc()
            self._metrics.commit_duration.observe(time.perf_counter() - started)

    async def _abort_quietly(self, *, patience: float | None) -> None:
        """Abort, waiting at most `patience` seconds (None: as long as it takes). A transaction whose
        abort is not waited for is left to the coordinator, which aborts it when the id's next producer
        starts or the transaction times out; this producer, in an unknown state, is then broken."""
        abort = asyncio.ensure_future(self._producer.abort_transaction())
        try:
            await asyncio.wait({abort}, timeout=patience)
        finally:
            if not abort.done():
                # A cancelled transaction must not wait for a broker that is gone: the caller gave up.
                abort.cancel()
                self._broken = True
        if abort.cancelled():
            return
        if isinstance(abort.exception(), KafkaError | AssertionError):
            # Fenced (a newer epoch, such as the coordinator's after aborting a transaction that
            # outlived transaction_timeout_ms, e.g. through a long broker outage) or otherwise fatal:
            # this producer can never begin another transaction.
            self._broken = True
        else:
            abort.result()  # anything else is a bug: raise it

    async def _replace_producer(self) -> None:
        """A new producer under the same transactional id: starting it aborts whatever the old one left
        open, and the poll that failed is retried from the last committed checkpoint."""
        old, self._producer = self._producer, self._new_producer()
        with contextlib.suppress(KafkaError):
            await _stop(old, broken=True)
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise PublishError(f"cannot restart producer {self.transactional_id}: {exc}") from exc
        self._broken = False
        _log.warning("replaced the transactional producer %s after a fatal error", self.transactional_id)
