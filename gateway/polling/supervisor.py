"""Owns every polling task of this process: starts, reconfigures and stops them as instances change
and as state partitions are assigned to this replica or taken away from it."""

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
from gateway.polling.task import PollerPlacement, ResourcePoller
from gateway.sources.base import Source
from gateway.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

SourceFactory = Callable[[Instance], Source]


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
        event_mode: Mode = "structured",
    ) -> None:
        self._source_factory = source_factory
        self._admin = admin
        self._topics = topics
        self._state_partitions = state_partitions
        self._topic_partitions = topic_partitions
        self._overlap_seconds = overlap_seconds
        self._limiter = asyncio.Semaphore(poll_concurrency)
        self._metrics = metrics
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
        self, partition: int, writer: TransactionalWriter, checkpoints: Mapping[str, Checkpoint]
    ) -> None:
        """Take a state partition over; its instances are then applied one by one."""
        self._partitions[partition] = _Partition(writer=writer, checkpoints=dict(checkpoints))

    async def release(self, partition: int) -> None:
        """Stop every poller of the partition; a transaction in flight is aborted by the cancellation."""
        owned = self._partitions.pop(partition, None)
        if owned is not None:
            for instance_id in list(owned.pollers):
                await self._stop(owned, instance_id)

    async def apply(self, instance_id: str, instance: Instance | None) -> None:
        """Bring the running pollers of one instance in line with its configuration (None: deleted)."""
        owned = self._partitions.get(state_partition(instance_id, self._state_partitions))
        if self._state is not _State.RUNNING or owned is None:
            return
        await self._stop(owned, instance_id)
        if instance is None or not instance.polling_enabled:
            return
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
                limiter=self._limiter,
                event_mode=self._event_mode,
            )
            self._metrics.checkpoint_ages.track(instance.id, resource.name, poller.committed_at)
            # Every line the poller logs, its source's included, names the instance and resource.
            context = task_context(instance_id=instance.id, resource=resource.name)
            task = asyncio.create_task(poller.run(), name=f"poll-{key}", context=context)
            task.add_done_callback(self._report_crash)
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

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error("poller crashed: %s", task.get_name(), exc_info=task.exception())
