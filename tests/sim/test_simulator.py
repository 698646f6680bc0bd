from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

import gateway.sim
from gateway.sim import DEMO_CLIENTS, Simulator, run_simulator

from ._support import Api, request_token


def test_exported_members_are_exactly_the_public_names() -> None:
    public = {name for name in vars(gateway.sim) if not name.startswith("_") and name != "annotations"}
    assert sorted(gateway.sim.__all__) == sorted(public)


async def test_simulator_runs_once() -> None:
    sim = Simulator()
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    async with sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.api_url == f"{sim.base_url}/api/data/v9.2"
        with pytest.raises(RuntimeError):
            await sim.start()
    with pytest.raises(RuntimeError):
        await sim.start()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_run_simulator_serves_seeded_changing_tables_until_cancelled(
    http: aiohttp.ClientSession,
) -> None:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    task = asyncio.create_task(
        run_simulator(
            "127.0.0.1", port, seed_records=30, change_rate=200, entity_sets=["accounts", "leads"], seed=1
        )
    )
    ((client_id, secret),) = DEMO_CLIENTS.items()
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "resource": base_url,
    }

    async def login() -> Api:
        while True:
            try:
                reply = await request_token(http, base_url, form)
            except aiohttp.ClientConnectionError:  # not listening yet
                await asyncio.sleep(0.01)
            else:
                return Api(http, f"{base_url}/api/data/v9.2", reply.json()["access_token"])

    api = await asyncio.wait_for(login(), 5)
    first = (await api.get("leads", prefer="odata.track-changes")).json()
    assert len(first["value"]) >= 20  # seeded, less what the generator may have deleted already

    async with asyncio.timeout(5):  # until the generator has changed something
        while not (await api.get(first["@odata.deltaLink"])).json()["value"]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
