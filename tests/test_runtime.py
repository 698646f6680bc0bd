"""`wait_for_stop`: a gateway process runs until it is told to stop, or until a component stops by
itself, which must end the process rather than leave it idle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import TaskCrashed
from gateway.runtime import RunningGateway, run_until_stopped, start_gateway, wait_for_stop
from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import delivery_settings
from tests.polling._processes import free_port


class DelivererDied(Exception):
    pass


async def test_a_component_that_stops_on_an_error_ends_the_wait_with_that_error() -> None:
    dies = asyncio.Event()

    async def failure() -> None:
        await dies.wait()
        raise DelivererDied("the deliverer stopped")

    waiting = asyncio.create_task(wait_for_stop(asyncio.Event(), failure))
    await asyncio.sleep(0)
    assert not waiting.done()
    dies.set()
    with pytest.raises(DelivererDied):
        async with asyncio.timeout(5):
            await waiting


async def test_a_stop_returns_and_stops_watching_the_components() -> None:
    watched = asyncio.Event()
    cancelled = asyncio.Event()

    async def failure() -> None:
        watched.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    stop = asyncio.Event()
    waiting = asyncio.create_task(wait_for_stop(stop, failure))
    async with asyncio.timeout(5):
        await watched.wait()
        stop.set()
        await waiting
    assert cancelled.is_set()


async def test_a_component_that_stops_without_an_error_still_ends_the_wait() -> None:
    async def failure() -> None:
        return None

    with pytest.raises(RuntimeError, match="stopped by itself"):
        async with asyncio.timeout(5):
            await wait_for_stop(asyncio.Event(), failure)


async def test_without_components_to_watch_only_the_stop_ends_the_wait() -> None:
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(5):
        await wait_for_stop(stop, None)


async def test_a_stop_and_a_failure_together_count_as_the_stop() -> None:
    """The shutdown then runs as for any stop; the component raises its error again as it closes."""

    async def failure() -> None:
        raise DelivererDied("the deliverer stopped")

    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(5):
        await wait_for_stop(stop, failure)


# A real gateway of every role, each of its vital tasks killed in turn (cancelled by the test, as
# nothing else would): /readyz turns 503 at once, the crash is counted, the wait ends with the task's
# name, and the shutdown that follows is clean. run_until_stopped then says it did not stop cleanly,
# which `event-gateway run` turns into exit status 1.
_VITAL = ("poller-membership", "tail-{state}.instances", "tail-{state}.delivery-state", "deliverer")


def _kill(name: str) -> None:
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == name]
    task.cancel()


async def _readiness(gateway: RunningGateway) -> tuple[int, dict[str, bool]]:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.metrics_url}/readyz") as response:
        return response.status, (await response.json())["conditions"]


@pytest.mark.parametrize("task", _VITAL)
async def test_a_killed_vital_task_makes_the_gateway_unready_and_ends_its_wait(
    settings: Settings, registry: CollectorRegistry, task: str
) -> None:
    name = task.format(state=settings.state_topic_prefix)
    async with start_gateway(delivery_settings(settings), registry=registry) as gateway:
        await wait_for(lambda: _ready(gateway), within=30)
        _kill(name)
        await wait_for(lambda: _unready(gateway), within=5)
        status, conditions = await _readiness(gateway)
        assert (status, conditions["tasks"]) == (503, False)
        assert [c for c, ok in conditions.items() if not ok] == ["tasks"]
        with pytest.raises(TaskCrashed) as crash:
            async with asyncio.timeout(5):
                await wait_for_stop(asyncio.Event(), gateway.failure)
        assert crash.value.task == name
        assert registry.get_sample_value("gateway_task_crashes_total", {"task": name}) == 1


async def _ready(gateway: RunningGateway) -> bool:
    return (await _readiness(gateway))[0] == 200


async def _unready(gateway: RunningGateway) -> bool:
    return (await _readiness(gateway))[0] == 503


async def test_a_process_that_lost_a_vital_task_stops_and_says_it_did_not_stop_cleanly(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = delivery_settings(settings, metrics_port=free_port(), shutdown_timeout_seconds=10.0)
    readyz = f"http://127.0.0.1:{settings.metrics_port}/readyz"

    async def status() -> int | None:
        try:
            async with aiohttp.ClientSession() as http, http.get(readyz) as response:
                return response.status
        except aiohttp.ClientError:
            return None

    stop = asyncio.Event()
    run = asyncio.create_task(run_until_stopped(settings, role="all", instances_path=None, stop=stop))
    await wait_for(lambda: _is(status, 200), within=30)
    with caplog.at_level(logging.ERROR, logger="gateway"):
        _kill("poller-membership")
        async with asyncio.timeout(15):
            stopped_cleanly = await run
    assert stopped_cleanly is False
    assert await status() is None  # the process's servers are closed
    messages = [r.getMessage() for r in caplog.records]
    assert "vital task poller-membership ended by itself; the process stops" in messages
    assert messages[-1] == "stopped because task poller-membership ended by itself"


async def _is(probe: Callable[[], Awaitable[int | None]], expected: int) -> bool:
    return await probe() == expected
