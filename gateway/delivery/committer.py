"""Commits what has finished, periodically: offsets alone with a plain commit, or with the outputs
they cover (parked retries, dead letters, markers) in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gateway.delivery.offsets import Windows
from gateway.delivery.outputs import write_outputs
from gateway.errors import PublishError
from gateway.kafka.transactions import TransactionalWriter

logger = logging.getLogger(__name__)

_FAILURES_TOLERATED = 20  # consecutive failed commits (about 10 s at the default interval) before giving up


def _retrieve_orphaned_commit_requests() -> None:
    """aiokafka sends a commit in a task of its own behind asyncio.shield. A cancelled commit (the
    shutdown stops the committer, or bounds the last commit) leaves that task running with no one
    to read its end; when the broker is gone it fails, and asyncio reports 'Task exception was
    never retrieved'. Such a failure changes nothing (the offsets were not committed, and the next
    owner delivers those events again), so it is read here and logged at debug level."""
    for task in asyncio.all_tasks():
        coroutine = getattr(task.get_coro(), "__qualname__", None)
        if not task.done() and coroutine == "GroupCoordinator._do_commit_offsets":
            task.add_done_callback(_log_orphaned_commit)


def _log_orphaned_commit(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.debug("a cancelled offset commit failed afterwards: %s", error)


class Committer:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        writer: TransactionalWriter,
        windows: Windows,
        group_id: str,
        interval: float = 0.2,
    ) -> None:
        self._consumer = consumer
        self._writer = writer
        self._windows = windows
        self._group_id = group_id
        self._interval = interval
        self._lock = asyncio.Lock()
        self.commits = 0

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit every finished prefix (of `partitions` only, if given); raises on failure, leaving
        the windows as they were, so the next call tries the same again."""
        async with self._lock:
            plan = {}
            for tp, window in self._windows.items():
                if partitions is not None and tp not in partitions:
                    continue
                ready = window.ready()
                if ready is not None:
                    plan[tp] = ready
            if not plan:
                return
            offsets = {tp: offset for tp, (offset, _count, _outputs) in plan.items()}
            outputs = [output for _offset, _count, outs in plan.values() for output in outs]
            if outputs:
                await write_outputs(self._writer, outputs, offsets=offsets, group_id=self._group_id)
            else:
                try:
                    await self._consumer.commit(offsets)
                except asyncio.CancelledError:
                    _retrieve_orphaned_commit_requests()
                    raise
                except KafkaError as exc:
                    raise PublishError(f"cannot commit offsets of {self._group_id}: {exc}") from exc
            for tp, (_offset, count, _outputs) in plan.items():
                current = self._windows.get(tp)
                if current is not None:
                    current.confirm(count)
            self.commits += 1

    async def run(self) -> None:
        """Commit every `interval` until cancelled; a commit that keeps failing ends the loop."""
        failures = 0
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.commit()
            except PublishError as exc:
                failures += 1
                if failures >= _FAILURES_TOLERATED:
                    raise
                # A rebalance in progress fails plain commits; the next round (or the revoke) retries.
                logger.warning("commit failed, will retry: %s", exc, extra={"error": type(exc).__name__})
            else:
                failures = 0
