"""The Watchdog: a vital task that ends by itself, however it ends, is counted, makes the process
unhealthy and ends the wait; one that its owner stops is none of that; a crash its owner recovers
from is only counted."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import TaskCrashed
from gateway.metrics import TaskMetrics
from gateway.tasks import Watchdog


class Broken(Exception):
    pass


def crashes(registry: CollectorRegistry, task: str) -> float:
    return registry.get_sample_value("gateway_task_crashes_total", {"task": task}) or 0.0


async def _crash_of(watchdog: Watchdog) -> TaskCrashed:
    with pytest.raises(TaskCrashed) as raised:
        async with asyncio.timeout(5):
            await watchdog.wait()
    return raised.value


async def test_a_vital_task_that_raises_is_counted_and_ends_the_wait_with_its_name_and_cause(
    registry: CollectorRegistry,
) -> None:
    watchdog = Watchdog(TaskMetrics(registry))
    fail = asyncio.Event()

    async def run() -> None:
        await fail.wait()
        raise Broken("lost the broker")

    task = watchdog.start(run, name="tail-x")
    await asyncio.sleep(0)
    assert watchdog.healthy()
    fail.set()
    crash = await _crash_of(watchdog)
    assert crash.task == "tail-x"
    assert isinstance(crash.__cause__, Broken)
    assert not watchdog.healthy()
    assert crashes(registry, "tail-x") == 1
    await task.stop()  # reported once, not raised again by its owner


async def test_a_vital_task_that_returns_has_stopped_by_itself(registry: CollectorRegistry) -> None:
    watchdog = Watchdog(TaskMetrics(registry))

    async def run() -> None:
        return None

    watchdog.start(run, name="deliverer")
    crash = await _crash_of(watchdog)
    assert crash.task == "deliverer"
    assert "returned" in str(crash.__cause__)
    assert crashes(registry, "deliverer") == 1


async def test_a_vital_task_cancelled_by_anyone_but_its_owner_has_crashed(
    registry: CollectorRegistry,
) -> None:
    watchdog = Watchdog(TaskMetrics(registry))
    started = asyncio.Event()

    async def run() -> None:
        started.set()
        await asyncio.Event().wait()

    watchdog.start(run, name="poller-membership")
    await started.wait()
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "poller-membership"]
    task.cancel()
    crash = await _crash_of(watchdog)
    assert crash.task == "poller-membership"
    assert isinstance(crash.__cause__, asyncio.CancelledError)


async def test_a_vital_task_its_owner_stops_is_no_crash(registry: CollectorRegistry) -> None:
    watchdog = Watchdog(TaskMetrics(registry))
    started = asyncio.Event()

    async def run() -> None:
        started.set()
        await asyncio.Event().wait()

    task = watchdog.start(run, name="tail-x")
    await started.wait()
    await task.stop()
    assert task.done()
    assert watchdog.healthy()
    assert crashes(registry, "tail-x") == 0
    waiting = asyncio.create_task(watchdog.wait())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    waiting.cancel()


async def test_a_task_stopped_before_its_first_step_leaves_no_coroutine_unawaited(
    registry: CollectorRegistry,
) -> None:
    """Warnings are errors: a coroutine made and never awaited would fail the test."""
    watchdog = Watchdog(TaskMetrics(registry))

    async def run() -> None:
        await asyncio.Event().wait()

    await watchdog.start(run, name="tail-x").stop()
    assert watchdog.healthy()


async def test_a_crash_that_its_owner_recovers_from_is_counted_and_not_fatal(
    registry: CollectorRegistry,
) -> None:
    watchdog = Watchdog(TaskMetrics(registry))
    watchdog.crashed("poller")
    watchdog.crashed("poller")
    assert crashes(registry, "poller") == 2
    assert watchdog.healthy()


async def test_only_the_first_of_several_crashes_ends_the_wait_and_each_is_counted(
    registry: CollectorRegistry,
) -> None:
    watchdog = Watchdog(TaskMetrics(registry))

    async def first() -> None:
        raise Broken("first")

    async def second() -> None:
        await asyncio.sleep(0)
        raise Broken("second")

    watchdog.start(first, name="a")
    watchdog.start(second, name="b")
    crash = await _crash_of(watchdog)
    await asyncio.sleep(0.01)
    assert crash.task == "a"
    assert (crashes(registry, "a"), crashes(registry, "b")) == (1, 1)
