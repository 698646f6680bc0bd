"""Poller replicas share the work through Kafka's consumer-group protocol, as Kafka Connect does.

Every poller replica joins one group on the instances topic. A replica polls the instances of the
partitions it is assigned; the checkpoints topic is co-partitioned, so it owns their checkpoints too.
On assignment it starts the partition's transactional writer (whose id fences any previous owner),
reads the partition's checkpoints and instances to their end, then starts their pollers. When a
partition is taken away it stops them, which aborts a transaction in flight. A writer whose producer
was fenced takes its transactional id back only if the group coordinator still assigns it the
partition.

Only what moves stops. aiokafka has only the eager protocol: at every join or leave each member is
told that all its partitions are revoked, then given its new assignment. A replica keeps polling
through the revocation, and the assignment tells it what moved: it stops the partitions it lost and
starts the ones it gained; the others run on, their pollers, producers and in-memory checkpoints
untouched. That overlap is safe because a partition's owner is whoever holds its transactional id
(`<state prefix>-poller-<partition>`, see kafka/transactions.py), not whoever the group names:

- The new owner's writer starts with `init_transactions`, which bumps the id's epoch. The
  coordinator first completes or aborts whatever transaction the old owner has open under that id,
  and from then on rejects the old producer's sends and commits as fenced. So the old owner, still
  polling the moved partition until its own assignment arrives, either committed before the new
  owner began (and the new owner reads that checkpoint, read_committed, after its start) or can
  commit nothing more: its polls fail, and its writer may not recover since `_still_owned` asks the
  coordinator. Nothing is published twice or lost; the same argument covers a replica paused past
  its session.
- A partition kept across the rebalance had no other owner in between only if this member's new
  assignment belongs to the generation right after the one of its previous assignment (or the same
  one). Else this member missed a generation (its session expired, or a rebalance restarted before
  it synced) in which another may have owned the partition and committed past our in-memory
  checkpoints: then everything it holds is released and read again from Kafka, as a new partition.

aiokafka's sticky assignor would move fewer partitions than round robin, but listing it beside round
robin (needed while older replicas in the group know only round robin) makes aiokafka 0.14 send one
JoinGroup per assignor (aio-libs/aiokafka#1168), and listing it alone locks older replicas out of the
group during a rolling upgrade. Round robin it stays.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from gateway.errors import PublishError
from gateway.instances.model import Instance
from gateway.kafka.compacted import read_table
from gateway.kafka.topics import TopicAdmin
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import ConsumerLag, PollingMetrics
from gateway.polling.row_state import group_row_states
from gateway.polling.stored import load_checkpoints
from gateway.polling.supervisor import PollerSupervisor
from gateway.tasks import VitalTask, Watchdog

logger = logging.getLogger(__name__)

# How stale the group leader's view of the instances topic may get. A leader whose metadata did not
# know the topic yet (just created on another broker, or a broker restarting) assigns every replica
# nothing, and only a metadata refresh that finds the partitions makes it rebalance: with aiokafka's
# default of five minutes, no instance was polled for that long.
_METADATA_MAX_AGE_MS = 5000

InstanceDecoder = Callable[[str, bytes | None], Instance | None]
WriterFactory = Callable[[int, Callable[[], Awaitable[bool]]], TransactionalWriter]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(slots=True)
class _Loading:
    """A newly assigned partition, read from its beginning until `end` before any poller starts."""

    end: int
    latest: dict[str, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    bootstrap_servers: str
    instances_topic: str
    checkpoints_topic: str
    row_state_topic: str | None  # None: no row state is kept
    group_id: str
    group_instance_id: str | None
    replica_id: str
    session_timeout_ms: int


class PollerMembership:
    def __init__(
        self,
        config: MembershipConfig,
        *,
        supervisor: PollerSupervisor,
        writer_factory: WriterFactory,
        decode_instance: InstanceDecoder,
        metrics: PollingMetrics,
        admin: TopicAdmin,
        watchdog: Watchdog,
        consumer_lag: ConsumerLag | None = None,
    ) -> None:
        self._config = config
        self._watchdog = watchdog
        self._admin = admin
        self._supervisor = supervisor
        self._writer_factory = writer_factory
        self._decode = decode_instance
        self._metrics = metrics
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.replica_id,
            group_id=config.group_id,
            group_instance_id=config.group_instance_id,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=max(config.session_timeout_ms // 5, 100),
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
        )
        self._lag = consumer_lag
        self._writers: dict[int, AsyncExitStack] = {}
        self._assignment: set[int] = set()  # what the group gave us; acquired one by one into _writers
        self._generation: int | None = None  # the group generation of that assignment
        # Per owned partition, the offset after the last instance record applied or loaded: where a
        # partition kept across a rebalance is read on from (the reassignment forgets positions).
        self._positions: dict[int, int] = {}
        self._loading: dict[int, _Loading] = {}
        self._task: VitalTask | None = None
        self._state = _State.NEW
        self.assigned = asyncio.Event()

    @property
    def partitions(self) -> list[int]:
        return sorted(self._writers)

    async def __aenter__(self) -> PollerMembership:
        if self._state is not _State.NEW:
            raise RuntimeError("a membership cannot be started twice")
        await self._consumer.start()
        if self._lag is not None:
            self._lag.track(self._config.group_id, self._consumer)
        self._consumer.subscribe([self._config.instances_topic], listener=_Listener(self))
        # Vital: without it no instance change reaches the pollers, and no assignment is loaded.
        self._task = self._watchdog.start(self._consume, name="poller-membership")
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        if self._task is not None:
            await self._task.stop()
        # Stop polling before leaving the group, so that no successor overlaps with us; then release
        # what a rebalance under way may have handed us meanwhile.
        for partition in list(self._writers):
            await self._release(partition)
        if self._lag is not None:
            self._lag.forget(self._consumer)
        await self._consumer.stop()
        for partition in list(self._writers):
            await self._release(partition)

    def _closed(self) -> bool:
        return self._state is _State.CLOSED

    async def _acquire(self, partition: int) -> None:
        if self._closed():
            return
        stack = AsyncExitStack()
        writer = await stack.enter_async_context(
            self._writer_factory(partition, partial(self._still_owned, partition))
        )
        tp = TopicPartition(self._config.instances_topic, partition)
        try:
            # The writer's start fenced the previous owner and aborted what it left open: read now.
            raw = await read_table(
                self._config.bootstrap_servers, self._config.checkpoints_topic, [partition]
            )
            checkpoints = load_checkpoints(raw)
            rows = None
            if self._config.row_state_topic is not None:
                rows = group_row_states(
                    await read_table(
                        self._config.bootstrap_servers, self._config.row_state_topic, [partition]
                    )
                )
            end = (await self._consumer.end_offsets([tp]))[tp]
            await self._consumer.seek_to_beginning(tp)
        except BaseException:
            await stack.aclose()
            raise
        if self._closed():  # the gateway began to stop while we read
            await stack.aclose()
            return
        self._writers[partition] = stack
        self._positions[partition] = 0
        self._supervisor.acquire(partition, writer, checkpoints, rows)
        self._loading[partition] = _Loading(end=end)
        self._metrics.partitions_owned.inc()
        logger.info("state partition assigned", extra={"partition": partition})

    async def _still_owned(self, partition: int) -> bool:
        """Whether the group coordinator assigns `partition` to this replica now. Asked before a fenced
        producer is replaced, because the replacement fences whoever fenced it. A replica paused past
        its session (a long GC pause, a frozen VM) resumes its polls before its next heartbeat tells
        it that its partitions have moved: its own view of what it owns is stale until then."""
        if partition not in self._assignment:
            return False
        try:
            group = await self._admin.describe_group(self._config.group_id)
        except PublishError:
            return False
        owned = (self._config.instances_topic, partition)
        return (
            group.state == "Stable"
            and any(m.client_id == self._config.replica_id and owned in m.partitions for m in group.members)
            and partition in self._assignment  # and no revocation began meanwhile
        )

    async def _release(self, partition: int) -> None:
        self._loading.pop(partition, None)
        self._positions.pop(partition, None)
        await self._supervisor.release(partition)
        stack = self._writers.pop(partition, None)
        if stack is not None:
            await stack.aclose()
            self._metrics.partitions_owned.dec()
            logger.info("state partition revoked", extra={"partition": partition})

    async def _consume(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                loading = self._loading.get(tp.partition)
                for record in records:
                    if record.key is None:
                        continue
                    if loading is not None:
                        loading.latest[record.key.decode()] = record.value
                    else:
                        await self._apply(record.key.decode(), record.value)
                if records and tp.partition in self._positions:
                    self._positions[tp.partition] = records[-1].offset + 1
            await self._finish_loading()

    async def _finish_loading(self) -> None:
        for partition, loading in list(self._loading.items()):
            tp = TopicPartition(self._config.instances_topic, partition)
            if await self._consumer.position(tp) < loading.end:
                continue
            del self._loading[partition]
            for instance_id, value in loading.latest.items():
                await self._apply(instance_id, value)
        if self._assignment and self._assignment == set(self._writers) and not self._loading:
            self.assigned.set()

    async def _apply(self, instance_id: str, value: bytes | None) -> None:
        await self._supervisor.apply(instance_id, self._decode(instance_id, value))

    def _group_generation(self) -> int:
        """The generation of the group this member last joined. aiokafka keeps it on its coordinator
        and has no public accessor (Java's is `groupMetadata().generationId()`)."""
        return int(self._consumer._coordinator.generation)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: PollerMembership) -> None:
        self._membership = membership

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """The eager protocol revokes everything: keep polling; the next assignment says what moved.
        Meanwhile no fenced writer may take its id back (`_still_owned`)."""
        self._membership._metrics.rebalances.inc()
        self._membership.assigned.clear()
        self._membership._assignment.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        membership = self._membership
        partitions = {tp.partition for tp in assigned}
        generation, previous = membership._group_generation(), membership._generation
        membership._generation = generation
        continuous = previous is not None and generation - previous in (0, 1)
        kept = partitions & set(membership._writers) if continuous else set()
        for partition in kept:  # before any await: the reader must not fetch from the reset position
            tp = TopicPartition(membership._config.instances_topic, partition)
            membership._consumer.seek(tp, membership._positions[partition])
        released = sorted(set(membership._writers) - kept)
        for partition in released:
            await membership._release(partition)
        if previous is not None:
            logger.info(
                "rebalanced (generation %d after %d): %d state partitions kept, %d released, %d to take over",
                generation,
                previous,
                len(kept),
                len(released),
                len(partitions - kept),
            )
        membership._assignment = partitions
        # aiokafka sends no heartbeat until this returns, and one acquisition takes up to a second
        # (the group consumer's offset requests wait behind its fetch): one after the other, a dozen
        # partitions outlast the session, the broker drops this member and the rebalance starts over.
        new = sorted(tp.partition for tp in assigned if tp.partition not in membership._writers)
        outcomes = await asyncio.gather(*(membership._acquire(p) for p in new), return_exceptions=True)
        for partition, outcome in zip(new, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                logger.error(
                    "cannot take state partition %d over",
                    partition,
                    exc_info=outcome,
                    extra={"error": type(outcome).__name__},
                )
