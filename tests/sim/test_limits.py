from __future__ import annotations

import asyncio

import aiohttp

from gateway.sim import Limits, ManualClock

from ._support import PASSWORD, USER, Api, SimulatorFactory, request_token


async def test_requests_over_the_window_answer_429_with_retry_after(
    make_simulator: SimulatorFactory, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    sim = await make_simulator(limits=Limits(requests_per_window=3, window_seconds=60))
    api = await Api.login(http, sim)
    for _ in range(3):
        assert (await api.get("accounts")).status == 200
        clock.advance(10)

    throttled = await api.get("accounts")

    assert throttled.status == 429
    assert throttled.headers["Retry-After"] == "30"  # the first request leaves the window 60 s after it came
    assert throttled.json() == {
        "error": {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 3 over time window of 60 seconds.",
        }
    }
    clock.advance(30)
    assert (await api.get("accounts")).status == 200


async def test_limits_count_per_user(make_simulator: SimulatorFactory, http: aiohttp.ClientSession) -> None:
    sim = await make_simulator(limits=Limits(requests_per_window=1, window_seconds=300))
    client = await Api.login(http, sim)
    form = {
        "grant_type": "password",
        "username": USER,
        "password": PASSWORD,
        "client_id": "c",
        "resource": sim.base_url,
    }
    user = Api(http, sim.api_url, (await request_token(http, sim, form)).json()["access_token"])

    assert (await client.get("accounts")).status == 200
    assert (await client.get("accounts")).status == 429
    assert (await user.get("accounts")).status == 200


async def test_concurrent_requests_over_the_limit_answer_429(
    make_simulator: SimulatorFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_simulator(limits=Limits(max_concurrent=2))
    api = await Api.login(http, sim)
    sim.faults.latency_ms = 200  # holds each admitted request open

    replies = await asyncio.gather(*(api.get("accounts") for _ in range(3)))

    assert sorted(reply.status for reply in replies) == [200, 200, 429]
    throttled = next(reply for reply in replies if reply.status == 429)
    assert throttled.headers["Retry-After"] == "1"
    assert throttled.json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 2.",
    }
