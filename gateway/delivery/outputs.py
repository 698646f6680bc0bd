"""A record the deliverer writes when it finishes an event: a parked retry, a dead letter, a marker.

It is written in the Kafka transaction that commits the event's offset, under the transactional id
of the event's partition (`fencing.py`), so an event is parked or dead-lettered exactly once,
however often the deliverer crashes or pauses around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from gateway.kafka.transactions import TransactionalWriter

Headers = tuple[tuple[str, bytes], ...]
# Deliverer transactions hold a few records; a shorter timeout frees a crashed one's partitions sooner.
DELIVERY_TRANSACTION_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None = field(repr=False)
    headers: Headers = field(default=(), repr=False)
    partition: int | None = None  # None: Kafka's default partitioner, by key


async def write_outputs(
    writer: TransactionalWriter,
    outputs: Sequence[Output],
    *,
    offsets: Mapping[TopicPartition, int] | None = None,
    group_id: str | None = None,
) -> None:
    """One transaction: every output, and `offsets` committed for `group_id`. All or nothing."""
    async with writer.transaction() as txn:
        for out in outputs:
            await txn.send(
                out.topic, key=out.key, value=out.value, headers=out.headers, partition=out.partition
            )
        if offsets and group_id is not None:
            await txn.send_offsets(offsets, group_id)
