"""Owns every polling task of this process: starts, reconfigures and stops them as instances change
and as state partitions are assigned to this replica or taken away from it, and restarts one that
crashes."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from gateway.events import Mode
from gateway.instances.model import Instance
from gateway.kafka.partitioning import state_partition
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.kafka.transactions import TransactionalWriter
from gateway.logs import task_context
from gateway.metrics import PollingMetrics
from gateway.polling.checkpoint import Checkpoint
from gateway.polling.row_state import RowStates
from gateway.polling.status import PollStatus
from gateway.polling.task import PollerPlacement, ResourcePoller
from gateway.sources.base import Source
from gateway.tasks import Watchdog, cancel_and_wait

logger = logging.getLogger(__name__)

SourceFactory = Callable[[Instance], Source]

# A poll's own failures (the source, Kafka) are handled inside it; a crash is a bug, often one that
# the next poll of the same data meets again. It is restarted after 1 s, then 2, 4, ... up to 5 min;
# one that ran longer than that before it crashed starts over from 1 s.
_RESTART_FIRST_SECONDS = 1.0
_RESTART_MAX_SECONDS = 300.0


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def checkpoint_key(instance_id: str, resource: str) -> str:
    return f"{instance_id}:{resource}"


@dataclass(slots=True)
class _Partition:
    """A state partition this replica owns: its writer, its checkpoints, and the instances it polls."""

    writer: TransactionalWriter
    checkpoints: dict[str, Checkpoint]
    rows: dict[tuple[str, str], RowStates] | None  # by (instance id, resource); None: no row state
    pollers: dict[str, list[tuple[ResourcePoller, asyncio.Task[None]]]] = field(default_factory=dict)


class PollerSupervisor:
    def __init__(
        self,
        *,
        source_factory: SourceFactory,
        admin: TopicAdmin,
        topics: TopicNames,
        state_partitions: int,
        topic_partitions: int,
        overlap_seconds: float,
        poll_concurrency: int,
        metrics: PollingMetrics,
        watchdog: Watchdog,
        event_mode: Mode = "structured",
    ) -> None:
        self._source_factory = source_factory
        self._watchdog = watchdog
        self._admin = admin
        self._topics = topics
        self._state_partitions = state_partitions
        self._topic_partitions = topic_partitions
        self._overlap_seconds = overlap_seconds
        self._limiter = asyncio.Semaphore(poll_concurrency)
        self._metrics = metrics
        self.status = PollStatus()  # the last poll of each resource polled here, for the console
        self._event_mode = event_mode
        self._partitions: dict[int, _Partition] = {}
        self._state = _State.NEW

    async def __aenter__(self) -> PollerSupervisor:
        if self._state is not _State.NEW:
            raise RuntimeError("a supervisor cannot be started twice")
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop every poller for good, aborting the transactions in flight. The first step of a
        shutdown, before the deliverers drain; the exit does it again, finding nothing left."""
        self._state = _State.CLOSED
        for partition in list(self._partitions):
            await self.release(partition)

    def polling(self) -> dict[int, list[str]]:
        """The instances polled, by owned state partition."""
        return {p: sorted(owned.pollers) for p, owned in sorted(self._partitions.items())}

    def acquire(
        self,
        partition: int,
        writer: TransactionalWriter,
        checkpoints: Mapping[str, Checkpoint],
        rows: Mapping[tuple[str, str], dict[str, bytes]] | None = None,
    ) -> None:
        """Take a state partition over, with its checkpoints and row states (None: none kept); its
        instances are then applied one by one."""
        self._partitions[partition] = _Partition(
            writer=writer,
            checkpoints=dict(checkpoints),
            rows=None if rows is None else {key: RowStates(states) for key, states in rows.items()},
        )

    async def release(self, partition: int) -> None:
        """Stop every poller of the partition; a transaction in flight is aborted by the cancellation."""
        owned = self._partitions.pop(partition, None)
        if owned is not None:
            for instance_id in list(owned.pollers):
                await self._stop(owned, instance_id)
                self.status.forget(instance_id)

    async def apply(self, instance_id: str, instance: Instance | None) -> None:
        """Bring the running pollers of one instance in line with its configuration (None: deleted)."""
        owned = self._partitions.get(state_partition(instance_id, self._state_partitions))
        if self._state is not _State.RUNNING or owned is None:
            return
        await self._stop(owned, instance_id)
        if instance is None or not instance.polling_enabled:
            self.status.forget(instance_id)
            return
        self.status.track(instance.id, frozenset(resource.name for resource in instance.resources))
        source = self._source_factory(instance)
        partition = state_partition(instance.id, self._state_partitions)
        started = []
        for resource in instance.resources:
            key = checkpoint_key(instance.id, resource.name)
            poller = ResourcePoller(
                instance=instance,
                resource=resource,
                source=source,
                writer=owned.writer,
                admin=self._admin,
                topics=self._topics,
                placement=PollerPlacement(checkpoint_key=key, state_partition=partition),
                checkpoint=owned.checkpoints.get(key),
                overlap_seconds=self._overlap_seconds,
                topic_partitions=self._topic_partitions,
                metrics=self._metrics,
                status=self.status,
                limiter=self._limiter,
                rows=None
                if owned.rows is None
                else owned.rows.setdefault((instance.id, resource.name), RowStates()),
                event_mode=self._event_mode,
            )
            self._metrics.checkpoint_ages.track(instance.id, resource.name, poller.committed_at)
            # Every line the poller logs, its source's included, names the instance and resource.
            context = task_context(instance_id=instance.id, resource=resource.name)
            task = asyncio.create_task(self._keep_polling(poller), name=f"poll-{key}", context=context)
            started.append((poller, task))
        owned.pollers[instance.id] = started
        self._metrics.pollers_running.inc(len(started))
        logger.info("polling started", extra={"instance_id": instance.id, "resources": len(started)})

    async def _stop(self, owned: _Partition, instance_id: str) -> None:
        running = owned.pollers.pop(instance_id, [])
        await cancel_and_wait(*(task for _poller, task in running))
        for poller, _task in running:
            self._metrics.checkpoint_ages.forget(instance_id, poller.resource.name)
            # Keep the newest committed position for a reconfigured instance.
            if poller.checkpoint is not None:
                owned.checkpoints[checkpoint_key(instance_id, poller.resource.name)] = poller.checkpoint
        if running:
            self._metrics.pollers_running.dec(len(running))
            logger.info("polling stopped", extra={"instance_id": instance_id})

    async def _keep_polling(self, poller: ResourcePoller) -> None:
        """Run the poller until it is stopped; after a crash, count it and start it again, from the
        checkpoint of its last completed poll, once the backoff has passed."""
        loop = asyncio.get_running_loop()
        crashes = 0
        while True:
            started = loop.time()
            try:
                await poller.run()
            except Exception as error:
                if loop.time() - started > _RESTART_MAX_SECONDS:
                    crashes = 0
                delay = min(_RESTART_FIRST_SECONDS * 2**crashes, _RESTART_MAX_SECONDS)
                crashes += 1
                self._watchdog.crashed("poller")
                logger.exception(
                    "poller crashed; restarting it in %g s", delay, extra={"error": type(error).__name__}
                )
                await asyncio.sleep(delay)
