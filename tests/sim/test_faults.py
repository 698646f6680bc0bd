from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.sim import ManualClock, Simulator

from ._support import Api, SimulatorFactory


async def put_faults(http: aiohttp.ClientSession, sim: Simulator, **faults: Any) -> dict[str, Any]:
    async with http.put(f"{sim.base_url}/_sim/faults", json=faults) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def test_faults_are_read_and_changed_at_run_time(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.base_url}/_sim/faults") as response:
        assert (await response.json())["fail_next"] == 0

    changed = await put_faults(http, sim, fail_next=2, latency_ms=5)

    assert changed["fail_next"] == 2
    assert changed["latency_ms"] == 5
    assert changed["fail_status"] == 503
    assert sim.faults.fail_next == 2


@pytest.mark.parametrize(
    "body", [{"fail_next": -1}, {"error_rate": 1.5}, {"fail_status": 404}, {"flood": True}]
)
async def test_invalid_faults_are_refused(
    sim: Simulator, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    async with http.put(f"{sim.base_url}/_sim/faults", json=body) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "0x80040203"
    assert sim.faults.fail_next == 0


async def test_burst_of_server_errors(sim: Simulator, api: Api, http: aiohttp.ClientSession) -> None:
    await put_faults(http, sim, fail_next=2, fail_status=500)

    statuses = [(await api.get("accounts")).status for _ in range(3)]

    assert statuses == [500, 500, 200]


async def test_burst_of_throttling(sim: Simulator, api: Api, http: aiohttp.ClientSession) -> None:
    await put_faults(http, sim, throttle_next=1, throttle_retry_after=7)

    throttled = await api.get("accounts")

    assert throttled.status == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "0x80072322"
    assert (await api.get("accounts")).status == 200


async def test_random_errors_repeat_with_the_seed(
    make_simulator: SimulatorFactory, http: aiohttp.ClientSession
) -> None:
    runs = []
    for _ in range(2):
        sim = await make_simulator(seed=42)
        api = await Api.login(http, sim)
        sim.faults.error_rate = 0.5
        runs.append([(await api.get("accounts")).status for _ in range(20)])

    assert runs[0] == runs[1]
    assert set(runs[0]) <= {200, 500, 503}
    assert len(set(runs[0])) > 1


async def test_malformed_json(sim: Simulator, api: Api, http: aiohttp.ClientSession) -> None:
    sim.state.bulk_load("accounts", 3)
    await put_faults(http, sim, malformed_next=1)

    broken = await api.get("accounts")

    assert broken.status == 200
    assert broken.headers["Content-Type"].startswith("application/json")
    with pytest.raises(orjson.JSONDecodeError):
        broken.json()
    assert len((await api.get("accounts")).json()["value"]) == 3


async def test_truncated_body(sim: Simulator, api: Api, http: aiohttp.ClientSession) -> None:
    sim.state.bulk_load("accounts", 3)
    sim.faults.truncate_next = 1

    with pytest.raises(aiohttp.ClientPayloadError):
        await api.get("accounts")

    assert len((await api.get("accounts")).json()["value"]) == 3


async def test_added_latency(sim: Simulator, api: Api) -> None:
    sim.faults.latency_ms = 150
    loop = asyncio.get_running_loop()

    started = loop.time()
    await api.get("accounts")

    assert loop.time() - started >= 0.15


async def test_clock_skew_shifts_the_timestamps_the_server_stamps(
    sim: Simulator, api: Api, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    await put_faults(http, sim, skew_seconds=-90)

    created = sim.state.upsert("opportunities", {"name": "Skewed"})
    explicit = sim.state.upsert("opportunities", {"modifiedon": "2025-06-01T00:00:00Z"})

    assert clock().isoformat() == "2026-01-01T00:00:00+00:00"
    assert created["createdon"] == created["modifiedon"] == "2025-12-31T23:58:30Z"
    assert explicit["modifiedon"] == "2025-06-01T00:00:00Z"  # only what the server stamps moves
    listed = (await api.get("opportunities", params={"$filter": "modifiedon lt 2026-01-01T00:00:00Z"})).json()
    assert {row["opportunityid"] for row in listed["value"]} == {
        created["opportunityid"],
        explicit["opportunityid"],
    }


async def test_faults_spare_the_token_and_admin_endpoints(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.fail_next = 5

    api = await Api.login(http, sim)  # the token endpoint answers
    async with http.get(f"{sim.base_url}/_sim/tables") as response:
        assert response.status == 200

    assert (await api.get("accounts")).status == 503
    assert sim.faults.fail_next == 4
