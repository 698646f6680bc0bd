"""Who may make anything visible for a delivery partition: whoever last took its transactional id.

The hazard is a deliverer that lost a partition and does not know it yet: paused past its session
(a long GC pause, a frozen VM, SIGSTOP) or cut off from the group coordinator, it resumes with
finished events whose parked retries, dead letters and markers it has not committed, and commits
them on top of what the partition's new owner has meanwhile parked, dead-lettered and committed.

Why not the group's generation. Kafka's answer is KIP-447: the transactional offset commit carries
the member's generation, which the coordinator checks, and the new owner's offset fetch waits for
open transactions (`require_stable`). aiokafka 0.14 sends neither: its TxnOffsetCommit (v0 to v2)
carries no generation, and the broker checks one only when it is sent. Asking the coordinator
before each commit (describe the group, then commit) leaves the time between the answer and the
commit, which a pause can make as long as it likes. A plain consumer commit does carry the
generation, but it cannot carry the outputs, and one that aiokafka sends after resetting its
generation is accepted by a group that has become empty.

So, as the pollers do for their state partitions (and Kafka Connect per task, KIP-618): one
transactional id per delivery partition, `<group>-<topic>-<partition>`, and everything the
deliverer makes visible for a partition is written under it: its records' outputs and its offset
in one transaction, the offset alone in a transaction too. The new owner's producer starts with
`init_transactions`, which bumps the id's epoch: the coordinator aborts (or finishes) what the old
owner has open, and rejects its later sends, offset commits and commits as fenced. Only then does
the new owner read the partition's committed offset and seek to it; records the consumer fetched
before are not delivered (aiokafka looks up positions as soon as it knows the assignment, while the
rebalance listener still runs). So each holder of the id continues exactly where the previous one
last committed, and nothing it did not commit becomes visible: no park, dead letter or offset twice.

- A partition that the eager protocol revokes and hands back to the same member in the next
  generation keeps its producer: nobody else held it in between. After a gap in the generations
  (this member's session expired, or it missed a rebalance), every partition is taken over anew.
- A producer that was fenced, or broke otherwise, is not replaced where it stands: the new one would
  fence the partition's current owner with a position that may be stale. The partition is given up
  (its deliveries cancelled, its uncommitted window dropped) and the member asks to rejoin the group;
  the assignment that follows takes it over from the committed offset, as above.
- The cost: a producer per owned partition (each event topic's partitions and each retry tier's,
  shared among the replicas), with its own connections, started at the first assignment; and a
  transaction per partition per commit round instead of one offset commit for all of them.
  `bench/fencing.py` measures both against the single-producer scheme. On the 2-core development
  machine, shared with other work, 24 partitions: their producers start in 0.09 to 0.15 s side by
  side, about 36 KiB each. With all 24 progressing, the committer's worst case, commit rounds run
  at 16 to 28 a second (380 to 660 transactions/s): 0.05 to 0.12 times the single transaction's
  rate in three of four runs (220 to 400 rounds/s), and level with it (15) in one whose broker was
  starved. Slower, but 3 to 5 times the rounds the committer asks for (one per 0.2 s); a slower
  round only gathers more records into the next one.
- A replica of an earlier version commits under its replica's id, which nothing fences: fencing
  holds once every replica runs this one.
"""

from __future__ import annotations

import logging
from types import TracebackType

from aiokafka import TopicPartition

from gateway.delivery.outputs import DELIVERY_TRANSACTION_TIMEOUT_MS
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import KafkaMetrics

logger = logging.getLogger(__name__)


async def _never() -> bool:
    return False


def transactional_id(group_id: str, tp: TopicPartition) -> str:
    return f"{group_id}-{tp.topic}-{tp.partition}"


class PartitionWriters:
    """The transactional writers of the delivery partitions this member holds."""

    def __init__(self, *, bootstrap_servers: str, group_id: str, metrics: KafkaMetrics) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._group_id = group_id
        self._metrics = metrics
        self._writers: dict[TopicPartition, TransactionalWriter] = {}

    @property
    def held(self) -> set[TopicPartition]:
        return set(self._writers)

    def get(self, tp: TopicPartition) -> TransactionalWriter | None:
        return self._writers.get(tp)

    def usable(self, tp: TopicPartition) -> bool:
        writer = self._writers.get(tp)
        return writer is not None and not writer.broken

    async def take(self, tp: TopicPartition) -> TransactionalWriter:
        """Start a writer for `tp`, fencing every earlier holder of its id (this member's too). The
        partition's committed offset must be read after this returns."""
        await self.release(tp)
        writer = TransactionalWriter(
            bootstrap_servers=self._bootstrap_servers,
            transactional_id=transactional_id(self._group_id, tp),
            metrics=self._metrics,
            transaction_timeout_ms=DELIVERY_TRANSACTION_TIMEOUT_MS,
            may_recover=_never,  # replaced only by `take`, whose caller reads the offset again
        )
        await writer.__aenter__()
        self._writers[tp] = writer
        return writer

    async def release(self, tp: TopicPartition) -> None:
        writer = self._writers.pop(tp, None)
        if writer is not None:
            await writer.__aexit__(None, None, None)

    async def __aenter__(self) -> PartitionWriters:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for tp in list(self._writers):
            await self.release(tp)
