"""Commits what has finished, periodically: per partition, one transaction under the partition's
transactional id with its offset and the outputs it covers (parked retries, dead letters, markers),
so that only the partition's current holder can make them visible (`fencing.py`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from aiokafka import TopicPartition

from gateway.delivery.fencing import PartitionWriters
from gateway.delivery.offsets import Windows
from gateway.delivery.outputs import Output, write_outputs
from gateway.errors import PublishError

logger = logging.getLogger(__name__)

_FAILURES_TOLERATED = 20  # consecutive failed commits (about 10 s at the default interval) before giving up


class Committer:
    def __init__(
        self,
        *,
        writers: PartitionWriters,
        windows: Windows,
        group_id: str,
        interval: float = 0.2,
    ) -> None:
        self._writers = writers
        self._windows = windows
        self._group_id = group_id
        self._interval = interval
        self._lock = asyncio.Lock()

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit every finished prefix (of `partitions` only, if given), the partitions side by side.
        Raises when one failed, after confirming the others; a failed partition's window stays as it
        was, so the next call tries the same again."""
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
            outcomes = await asyncio.gather(
                *(
                    self._commit_partition(tp, offset, outputs)
                    for tp, (offset, _count, outputs) in plan.items()
                ),
                return_exceptions=True,
            )
            failures: list[PublishError] = []
            for (tp, (_offset, count, _outputs)), outcome in zip(plan.items(), outcomes, strict=True):
                if isinstance(outcome, PublishError):
                    failures.append(outcome)
                elif isinstance(outcome, BaseException):
                    raise outcome
                elif (current := self._windows.get(tp)) is not None:
                    current.confirm(count)
            if failures:
                first = failures[0]
                share = f"{len(failures)} of {len(plan)} partitions"
                raise PublishError(f"cannot commit {share} of {self._group_id}: {first}") from first

    async def _commit_partition(self, tp: TopicPartition, offset: int, outputs: list[Output]) -> None:
        writer = self._writers.get(tp)
        if writer is None:
            raise PublishError(f"no writer holds {tp.topic}/{tp.partition}")
        await write_outputs(writer, outputs, offsets={tp: offset}, group_id=self._group_id)

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
                # A fenced partition is given up by the reader; a broker hiccup passes.
                logger.warning("commit failed, will retry: %s", exc, extra={"error": type(exc).__name__})
            else:
                failures = 0
