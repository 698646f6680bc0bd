from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.sim import ManualClock, Simulator

from ._support import CLIENT, PASSWORD, SECRET, USER, Api, SimulatorFactory


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_simulator(clock: ManualClock) -> AsyncIterator[SimulatorFactory]:
    """Start simulators on ephemeral ports with the test credentials, the manual clock and a seed."""
    started: list[Simulator] = []

    async def make(**options: Any) -> Simulator:
        options = {
            "users": {USER: PASSWORD},
            "clients": {CLIENT: SECRET},
            "clock": clock,
            "seed": 7,
            **options,
        }
        simulator = Simulator(**options)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        await simulator.close()


@pytest.fixture
async def sim(make_simulator: SimulatorFactory) -> Simulator:
    return await make_simulator()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(http: aiohttp.ClientSession, sim: Simulator) -> Api:
    return await Api.login(http, sim)
