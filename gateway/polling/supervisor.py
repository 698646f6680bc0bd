"""Owns every polling task of this process: starts, reconfigures and stops them as instances change."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Mapping
from types import TracebackType

from gateway.events import Mode
from gateway.instances.model import Instance
from gateway.kafka.partitioning import state_partition
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.kafka.transactions import PartitionWriter
from gateway.metrics import PollingMetrics
from gateway.polling.checkpoint import Checkpoint
from gateway.polling.task import PollerPlacement, ResourcePoller
from gateway.sources.base import Source

logger = logging.getLogger(__name__)

SourceFactory = Callable[[Instance], Source]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def checkpoint_key(instance_id: str, resource: str) -> str:
    return f"{instance_id}:{resource}"


class PollerSupervisor:
    def __init__(
        self,
        *,
        source_factory: SourceFactory,
        writers: Mapping[int, PartitionWriter],
        admin: TopicAdmin,
        topics: TopicNames,
        checkpoints: Mapping[str, Checkpoint],
        state_partitions: int,
        topic_partitions: int,
        overlap_seconds: float,
        poll_concurrency: int,
        metrics: PollingMetrics,
        event_mode: Mode = "structured",
    ) -> None:
        self._source_factory = source_factory
        self._writers = writers
        self._admin = admin
        self._topics = topics
        self._checkpoints = dict(checkpoints)
        self._state_partitions = state_partitions
        self._topic_partitions = topic_partitions
        self._overlap_seconds = overlap_seconds
        self._limiter = asyncio.Semaphore(poll_concurrency)
        self._metrics = metrics
        self._event_mode = event_mode
        self._pollers: dict[str, list[tuple[ResourcePoller, asyncio.Task[None]]]] = {}
        self._state = _State.NEW

    async def __aenter__(self) -> PollerSupervisor:
        if self._state is not _State.NEW:
            raise RuntimeError("a supervisor cannot be started twice")
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        for instance_id in list(self._pollers):
            await self._stop(instance_id)

    def pollers(self, instance_id: str) -> list[ResourcePoller]:
        return [poller for poller, _task in self._pollers.get(instance_id, [])]

    async def apply(self, instance_id: str, instance: Instance | None) -> None:
        """Bring the running pollers of one instance in line with its configuration (None: deleted)."""
        if self._state is not _State.RUNNING:
            return
        await self._stop(instance_id)
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
                writer=self._writers[partition],
                admin=self._admin,
                topics=self._topics,
                placement=PollerPlacement(checkpoint_key=key, state_partition=partition),
                checkpoint=self._checkpoints.get(key),
                overlap_seconds=self._overlap_seconds,
                topic_partitions=self._topic_partitions,
                metrics=self._metrics,
                limiter=self._limiter,
                event_mode=self._event_mode,
            )
            self._metrics.checkpoint_ages.track(instance.id, resource.name, poller.committed_at)
            task = asyncio.create_task(poller.run(), name=f"poll-{key}")
            task.add_done_callback(self._report_crash)
            started.append((poller, task))
        self._pollers[instance.id] = started
        self._metrics.pollers_running.inc(len(started))
        logger.info("polling started", extra={"instance_id": instance.id, "resources": len(started)})

    async def _stop(self, instance_id: str) -> None:
        running = self._pollers.pop(instance_id, [])
        for _poller, task in running:
            task.cancel()
        for poller, task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._metrics.checkpoint_ages.forget(instance_id, poller.resource.name)
            # Keep the newest committed position for a reconfigured instance.
            if poller.checkpoint is not None:
                self._checkpoints[checkpoint_key(instance_id, poller.resource.name)] = poller.checkpoint
        if running:
            self._metrics.pollers_running.dec(len(running))
            logger.info("polling stopped", extra={"instance_id": instance_id})

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error("poller crashed: %s", task.get_name(), exc_info=task.exception())
