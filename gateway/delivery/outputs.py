"""A record the deliverer writes when it finishes an event: a parked retry, a dead letter, a marker.

It is written in the Kafka transaction that commits the event's offset, so an event is parked or
dead-lettered exactly once, however often the deliverer crashes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from gateway.errors import PublishError

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None = field(repr=False)
    headers: Headers = field(default=(), repr=False)
    partition: int | None = None  # None: Kafka's default partitioner, by key


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class OutputWriter:
    """A transactional producer that writes outputs, and consumer offsets with them, atomically.

    The transactional id is the replica's (GATEWAY_GROUP_INSTANCE_ID) or unique to the process:
    transactions here last milliseconds, and a crashed process's open one is aborted when the same
    replica comes back, or by the broker after `transaction_timeout_ms`. Without KIP-447 in
    aiokafka there is no group-based fencing; a deliverer that lost a partition in a rebalance may
    still finish a transaction for it, which at worst delivers an event twice, with the same id.
    """

    def __init__(
        self, *, bootstrap_servers: str, transactional_id: str, transaction_timeout_ms: int = 30_000
    ) -> None:
        self.transactional_id = transactional_id
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=transactional_id,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            compression_type="zstd",
            linger_ms=2,
            transaction_timeout_ms=transaction_timeout_ms,
        )
        self._lock = asyncio.Lock()
        self._state = _State.NEW

    async def __aenter__(self) -> OutputWriter:
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

    async def write(
        self,
        outputs: Sequence[Output],
        *,
        offsets: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None:
        """One transaction: every output, and `offsets` committed for `group_id`. All or nothing."""
        if self._state is not _State.OPEN:
            raise RuntimeError(f"writer {self.transactional_id} is {self._state.value}")
        async with self._lock:
            try:
                await self._producer.begin_transaction()
            except KafkaError as exc:
                raise PublishError(f"cannot begin transaction {self.transactional_id}: {exc}") from exc
            try:
                futures = [
                    await self._producer.send(
                        out.topic,
                        key=out.key,
                        value=out.value,
                        headers=list(out.headers) or None,
                        partition=out.partition,
                    )
                    for out in outputs
                ]
                await asyncio.gather(*futures)
                if offsets:
                    await self._producer.send_offsets_to_transaction(dict(offsets), group_id)
                await self._producer.commit_transaction()
            except BaseException as exc:
                await self._abort_quietly()
                if isinstance(exc, KafkaError):
                    raise PublishError(f"transaction {self.transactional_id} failed: {exc}") from exc
                raise

    async def _abort_quietly(self) -> None:
        # A fenced or broken producer cannot abort; the broker aborts on its own after the timeout.
        with contextlib.suppress(KafkaError, AssertionError):
            await asyncio.shield(self._producer.abort_transaction())
