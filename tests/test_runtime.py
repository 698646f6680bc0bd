"""`wait_for_stop`: a gateway process runs until it is told to stop, or until a component stops by
itself, which must end the process rather than leave it idle."""

from __future__ import annotations

import asyncio

import pytest

from gateway.runtime import wait_for_stop


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
