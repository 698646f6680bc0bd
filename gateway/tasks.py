"""Background tasks: each has one owner that starts, keeps and stops it, and every one reports to the
process's `Watchdog`, so that none dies silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.errors import TaskCrashed
from gateway.metrics import TaskMetrics

logger = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel the tasks and wait until each has finished.

    Their cancellation is expected and swallowed; a cancellation of the caller itself is not.
    """
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


class Watchdog:
    """What every long-running task of a process reports to.

    A *vital* task (`start`) runs until its owner stops it: the poller group membership, the tails of
    the compacted topics, the deliverer. If one ends any other way (it raised, it returned, something
    else cancelled it), the process has lost a part it cannot work without: the crash is counted in
    `gateway_task_crashes_total`, `healthy()` turns false (so /readyz answers 503), and `wait()`
    raises `TaskCrashed`, which ends the process with exit status 1 so that whatever supervises it
    starts a fresh one. Idle, it would keep its partitions, and their work would wait for a person.

    A task whose owner restarts it (a poller) reports each crash with `crashed`: counted, not fatal.
    """

    def __init__(self, metrics: TaskMetrics) -> None:
        self._metrics = metrics
        self._crash: TaskCrashed | None = None
        self._crashed = asyncio.Event()

    def start(self, run: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> VitalTask:
        """Start `run()` as a vital task named `name` (also its label in the metric)."""
        return VitalTask(run, name=name, watchdog=self)

    def crashed(self, name: str) -> None:
        """Count a crash that the task's owner recovers from; the owner logs it with its context."""
        self._metrics.crashes.labels(name).inc()

    def healthy(self) -> bool:
        return self._crash is None

    async def wait(self) -> None:
        """Return never; raise `TaskCrashed` once a vital task has ended by itself."""
        await self._crashed.wait()
        assert self._crash is not None
        raise self._crash

    def _lost(self, name: str, error: BaseException) -> None:
        self._metrics.crashes.labels(name).inc()
        logger.error("vital task %s ended by itself; the process stops", name, exc_info=error)
        if self._crash is None:
            crash = TaskCrashed(f"task {name} ended by itself: {error!r}", task=name)
            crash.__cause__ = error
            self._crash = crash
            self._crashed.set()


class VitalTask:
    """The owner's handle on a task that `Watchdog.start` started. `stop()` cancels it and waits for
    it; only that cancellation is expected, and what else ends it was reported when it happened, so
    `stop()` does not raise it again."""

    def __init__(
        self, run: Callable[[], Coroutine[Any, Any, None]], *, name: str, watchdog: Watchdog
    ) -> None:
        self.name = name
        self._watchdog = watchdog
        self._stopping = False
        # The coroutine is made inside the task: cancelled before its first step, it leaves none unawaited.
        self._task = asyncio.create_task(self._guard(run), name=name)

    def done(self) -> bool:
        return self._task.done()

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._task)

    async def _guard(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await run()
        except asyncio.CancelledError as cancelled:
            if not self._stopping:
                self._watchdog._lost(self.name, cancelled)
            raise
        except Exception as error:  # noqa: BLE001 - reported; it ends the process
            self._watchdog._lost(self.name, error)
        else:
            self._watchdog._lost(self.name, RuntimeError(f"{self.name} returned"))
