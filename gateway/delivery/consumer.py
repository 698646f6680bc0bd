"""Reads the event topics and the retry tiers as one member of the deliverer group, one task per record.

Records of a partition are handled concurrently, not one after the other, so that a hanging
endpoint holds back only its own events; `offsets.py` keeps the commits in order. Flow control:
- at most `max_pending` records are being handled at once; reading waits beyond that, and asks
  the host slots to shed the waiting events of slow hosts (`HostSlots.relieve`), until an eighth of
  them has finished: records are then read in batches, not one per finished delivery;
- a partition whose window of uncommitted records reaches `window_cap` is paused until its
  commits catch up;
- a retry tier partition whose head record is not due yet is rewound to it and paused until then.

On a rebalance, the revoked partitions' events still waiting for a slot are cancelled at once, since
they have sent nothing; the requests in flight get `revoke_grace` seconds to finish. What finished is
committed, the rest is cancelled, and the partition's next owner reads it again. A partition is
delivered only once its transactional writer has fenced any earlier holder and its committed offset
has been read after that (`fencing.py`); one whose writer was fenced later is given up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from gateway.delivery.committer import Committer
from gateway.delivery.fencing import PartitionWriters
from gateway.delivery.handler import ConsumedRecord, RecordHandler
from gateway.delivery.offsets import PartitionWindow, Windows
from gateway.delivery.retry import NOT_BEFORE_HEADER, RetryPolicy
from gateway.delivery.topic_names import DeliveryTopics, tier_name
from gateway.errors import PublishError
from gateway.metrics import DeliveryMetrics

logger = logging.getLogger(__name__)

_MAX_FETCH_WAIT_MS = 500
# While full, how often slow hosts are asked to shed their waiting events (`HostSlots.relieve`): well
# within the shortest slow-host threshold (0.1 s, at a 1 s request timeout).
_FULL_WAIT_SECONDS = 0.02
_REFILL_SHARE = 8  # reading resumes when this share of max_pending is free
_GAUGES_EVERY_SECONDS = 1.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, reader: DeliveryReader) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._reader.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._reader.assign(set(assigned))


class DeliveryReader:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        handler: RecordHandler,
        committer: Committer,
        writers: PartitionWriters,
        windows: Windows,
        topics: DeliveryTopics,
        policy: RetryPolicy,
        metrics: DeliveryMetrics,
        max_pending: int,
        revoke_grace: float,
        relieve: Callable[[], None],
        sending: Callable[[asyncio.Task[None]], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._committer = committer
        self._writers = writers
        self._windows = windows
        self._topics = topics
        self._policy = policy
        self._metrics = metrics
        self._max_pending = max_pending
        self._resume_at = max_pending - max(max_pending // _REFILL_SHARE, 1)
        self._window_cap = max(16 * max_pending, 1024)
        self._revoke_grace = revoke_grace
        self._relieve = relieve
        self._sending = sending
        self._clock = clock
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._progress = asyncio.Event()
        self._crash: BaseException | None = None
        self._revoking: set[TopicPartition] = set()
        self._held: dict[TopicPartition, int] = {}  # retry partitions paused until their head is due (ms)
        self._full: set[TopicPartition] = set()  # partitions paused until their commits catch up
        self._gauges_at = 0.0
        self._generation: int | None = None  # the group generation of the last assignment
        self.listener = _Rebalance(self)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Read and dispatch until cancelled; raises what crashed a record's task."""
        while True:
            if self._crash is not None:
                raise self._crash
            self._give_up_fenced()
            self._progress.clear()
            if len(self._tasks) > self._resume_at:
                self._relieve()  # a slow host's waiting events must not keep everyone else's out
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_FULL_WAIT_SECONDS):
                        await self._progress.wait()
                continue
            self._resume_ready()
            batches = await self._consumer.getmany(
                timeout_ms=self._fetch_wait_ms(), max_records=min(self._max_pending - len(self._tasks), 1000)
            )
            now_ms = int(self._clock() * 1000)
            for tp, records in batches.items():
                self._admit(tp, records, now_ms)
            await self._report()

    def _admit(self, tp: TopicPartition, records: list[ConsumedRecord], now_ms: int) -> None:
        if tp in self._revoking:
            return  # its next owner reads these again from the committed offset
        window = self._windows.get(tp)
        if window is None:
            # Not ours to deliver yet: aiokafka hands out records of a new assignment before the
            # rebalance listener has fenced the partition's previous holder. Read them again later.
            self._consumer.seek(tp, records[0].offset)
            self._consumer.pause(tp)
            return
        tier = self._topics.tier_of(tp.topic)
        for record in records:
            if tier is not None:
                due_ms = self._due_ms(record, tier)
                if due_ms > now_ms:
                    self._consumer.seek(tp, record.offset)
                    self._consumer.pause(tp)
                    self._held[tp] = due_ms
                    break
            window.add(record.offset)
            task = asyncio.create_task(
                self._deliver(window, record), name=f"deliver-{tp.topic}-{tp.partition}"
            )
            self._tasks[task] = tp
            task.add_done_callback(self._finished)
        if len(window) >= self._window_cap and tp not in self._full:
            self._full.add(tp)
            self._consumer.pause(tp)
            logger.warning(
                "partition %s/%d paused: %d records wait for a commit", tp.topic, tp.partition, len(window)
            )

    def _due_ms(self, record: ConsumedRecord, tier: float) -> int:
        """The head's `not-before`, bounded by its tier's longest wait from when it was parked."""
        bound: int = record.timestamp + int(self._policy.wait_bound(tier) * 1000)
        for name, value in record.headers:
            if name == NOT_BEFORE_HEADER:
                try:
                    return min(int(value), bound)
                except ValueError:
                    break
        return 0  # malformed: let the handler deal with it now

    async def _deliver(self, window: PartitionWindow, record: ConsumedRecord) -> None:
        outputs = await self._handler.handle(record, handed_over=self._revoking)
        # The window of the partition as it was when the record was read: after a rebalance that
        # handed the partition back, a late finish must not mark the new reading of the offset.
        window.finish(record.offset, outputs)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if len(self._tasks) <= self._resume_at:
            self._progress.set()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._crash is None:
            logger.error("a delivery task crashed: %s", task.get_name(), exc_info=exc)
            self._crash = exc
            self._progress.set()

    def _resume_ready(self) -> None:
        now_ms = int(self._clock() * 1000)
        for tp, due_ms in list(self._held.items()):
            if due_ms <= now_ms:
                del self._held[tp]
                if tp not in self._full:
                    self._consumer.resume(tp)
        for tp in list(self._full):
            window = self._windows.get(tp)
            if window is None or len(window) < self._window_cap // 2:
                self._full.discard(tp)
                if tp not in self._held:
                    self._consumer.resume(tp)

    def _fetch_wait_ms(self) -> int:
        if not self._held:
            return _MAX_FETCH_WAIT_MS
        soonest = min(self._held.values()) - int(self._clock() * 1000)
        return max(10, min(_MAX_FETCH_WAIT_MS, soonest))

    async def _report(self) -> None:
        now = time.monotonic()
        if now - self._gauges_at < _GAUGES_EVERY_SECONDS:
            return
        self._gauges_at = now
        self._metrics.pending.set(len(self._tasks))
        waiting = dict.fromkeys(self._policy.tiers, 0)
        for tp in self._consumer.assignment():
            tier = self._topics.tier_of(tp.topic)
            highwater = self._consumer.highwater(tp)
            if tier is None or highwater is None:
                continue
            position: int = await self._consumer.position(tp)
            waiting[tier] = waiting.get(tier, 0) + max(highwater - position, 0)
        for tier, count in waiting.items():
            self._metrics.retries_pending.labels(tier_name(tier)).set(count)

    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Deliver at once the partitions held through the rebalance; take the others over."""
        generation, previous = self._group_generation(), self._generation
        self._generation = generation
        # Held by nobody else in between only if no generation was missed (see fencing.py).
        continuous = previous is not None and generation - previous in (0, 1)
        kept = {tp for tp in assigned if continuous and self._writers.usable(tp)}
        self._open(kept)  # before any await: their records are being fetched already
        moved = sorted(self._writers.held - assigned)
        taken = sorted(assigned - kept)
        # aiokafka sends no heartbeat until the listener returns: start the producers side by side.
        outcomes = await asyncio.gather(
            *(self._writers.release(tp) for tp in moved),
            *(self._take_over(tp) for tp in taken),
            return_exceptions=True,
        )
        failed = [
            (tp, outcome)
            for tp, outcome in zip([*moved, *taken], outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        for tp, error in failed:
            logger.error("cannot take partition %s/%d over", tp.topic, tp.partition, exc_info=error)
        if failed:
            self._rejoin()  # so that the next assignment tries again, instead of leaving them unread
        if assigned:
            logger.info(
                "deliverer assigned %d partitions (generation %d): %d kept, %d taken over, %d released",
                len(assigned),
                generation,
                len(kept),
                len(taken),
                len(moved),
            )

    async def _take_over(self, tp: TopicPartition) -> None:
        await self._writers.take(tp)  # fences every earlier holder: their commits are final now
        offset = await self._consumer.committed(tp)
        # A rebalance during an await may have revoked it: the next assignment takes it over again
        # and releases its writer, and aiokafka refuses to seek or resume what is not assigned.
        if tp not in self._consumer.assignment():
            return
        if offset is not None:
            self._consumer.seek(tp, offset)
        else:
            await self._consumer.seek_to_beginning(tp)
            if tp not in self._consumer.assignment():
                return
        self._open({tp})

    def _open(self, partitions: set[TopicPartition]) -> None:
        self._windows.open(partitions)
        for tp in partitions:
            self._consumer.resume(tp)  # `_admit` may have paused it before it was ours

    def _give_up_fenced(self) -> None:
        """Drop the partitions whose writer was fenced (or broke): a newer holder may have committed
        past what this member holds, so nothing of theirs may be committed from here, and they can
        only be taken over again from the committed offset, at the next assignment."""
        lost = {tp for tp, _window in self._windows.items() if not self._writers.usable(tp)}
        if not lost:
            return
        for task, tp in self._tasks.items():
            if tp in lost:
                task.cancel()
        for tp in lost:
            self._held.pop(tp, None)
            self._full.discard(tp)
        self._windows.close(lost)
        logger.warning(
            "gave up %d partitions whose producer was fenced; rejoining the group to take them over",
            len(lost),
        )
        self._rejoin()

    def _rejoin(self) -> None:
        # aiokafka has no public call for this (Java's `enforceRebalance`).
        self._consumer._coordinator.request_rejoin()

    def _group_generation(self) -> int:
        """aiokafka keeps the generation on its coordinator, with no public accessor (Java's is
        `groupMetadata().generationId()`)."""
        return int(self._consumer._coordinator.generation)

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        self._revoking |= revoked
        for tp in revoked:
            self._held.pop(tp, None)
            self._full.discard(tp)
        try:
            tasks = [task for task, tp in self._tasks.items() if tp in revoked]
            in_flight = []
            for task in tasks:
                if self._sending(task):
                    in_flight.append(task)
                else:
                    task.cancel()  # delivering it now would only hold the whole group's rebalance up
            if in_flight:
                await asyncio.wait(in_flight, timeout=self._revoke_grace)
            try:
                await self._committer.commit(revoked)
            except PublishError as exc:
                logger.warning("cannot commit revoked partitions; their next owner repeats them: %s", exc)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
        finally:
            self._windows.close(revoked)
            self._revoking -= revoked

    async def drain(self, grace: float) -> None:
        """Let the deliveries in flight finish within `grace` seconds, then cancel the rest."""
        tasks = list(self._tasks)
        if tasks:
            logger.info("waiting up to %g s for %d deliveries in flight", grace, len(tasks))
            _done, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
                logger.warning("%d deliveries cancelled at shutdown; they will be repeated", len(late))
