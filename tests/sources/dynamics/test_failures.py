"""Service protection, server errors and bad bodies, as the simulator injects them."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import (
    SourceRateLimited,
    SourceRequestError,
    SourceResponseError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.sim import Limits, Simulator
from gateway.sources.dynamics.transport import RetryPolicy

from ._support import MakeSource, collect, fetch, sample

_ACCOUNTS = fetch("/hubs/crm/accounts", page_size=2)


def _statuses(sim: Simulator, path_end: str = "/accounts") -> list[int]:
    return [r.status for r in sim.requests if r.path.endswith(path_end)]


class _Sleeps:
    """A RetryPolicy sleep that records its delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_throttled_request_waits_its_retry_after_and_is_counted(
    sim: Simulator, make_source: MakeSource, registry: CollectorRegistry
) -> None:
    sim.state.bulk_load("accounts", 3)
    sim.faults.throttle_next = 1
    sim.faults.throttle_retry_after = 1

    started = time.monotonic()
    pages = await collect(make_source(), _ACCOUNTS)

    assert time.monotonic() - started >= sim.faults.throttle_retry_after
    assert sum(len(page.records) for page in pages) == 3
    assert _statuses(sim) == [429, 200, 200]
    assert sample(registry, "gateway_source_throttled_total") == 1
    assert sample(registry, "gateway_source_retry_after_seconds_sum") == 1
    assert sample(registry, "gateway_source_requests_total", status_class="4xx") == 1
    assert sample(registry, "gateway_source_requests_total", status_class="2xx") == 3  # token, 2 pages


async def test_throttling_that_persists_raises_rate_limited_with_its_retry_after(
    sim: Simulator, make_source: MakeSource, registry: CollectorRegistry
) -> None:
    sim.faults.throttle_next = 10
    sim.faults.throttle_retry_after = 7
    sleeps = _Sleeps()

    with pytest.raises(SourceRateLimited) as raised:
        await collect(make_source(retry_policy=RetryPolicy(throttled_tries=4, sleep=sleeps)), _ACCOUNTS)

    assert raised.value.retry_after == 7
    assert raised.value.retriable
    assert sleeps.delays == [7, 7, 7]
    assert _statuses(sim) == [429] * 4
    assert sample(registry, "gateway_source_throttled_total") == 4


async def test_retry_after_longer_than_the_policy_allows_is_left_to_the_poller(
    sim: Simulator, make_source: MakeSource
) -> None:
    sim.faults.throttle_next = 1
    sim.faults.throttle_retry_after = 300
    sleeps = _Sleeps()

    with pytest.raises(SourceRateLimited) as raised:
        await collect(make_source(retry_policy=RetryPolicy(max_retry_after=60, sleep=sleeps)), _ACCOUNTS)

    assert raised.value.retry_after == 300
    assert sleeps.delays == []


async def test_burst_of_server_errors_is_retried_with_backoff(
    sim: Simulator, make_source: MakeSource, registry: CollectorRegistry
) -> None:
    sim.state.bulk_load("accounts", 3)
    sim.faults.fail_next = 2
    sleeps = _Sleeps()

    pages = await collect(make_source(retry_policy=RetryPolicy(base_delay=0.5, sleep=sleeps)), _ACCOUNTS)

    assert sum(len(page.records) for page in pages) == 3
    assert _statuses(sim) == [503, 503, 200, 200]
    assert 0.25 <= sleeps.delays[0] <= 0.75  # 0.5 s, jittered
    assert 0.5 <= sleeps.delays[1] <= 1.5  # doubled
    assert sample(registry, "gateway_source_requests_total", status_class="5xx") == 2


async def test_persistent_server_errors_raise_unavailable(sim: Simulator, make_source: MakeSource) -> None:
    sim.faults.fail_next = 10
    sim.faults.fail_status = 500

    with pytest.raises(SourceUnavailable) as raised:
        await collect(make_source(), _ACCOUNTS)

    assert raised.value.status == 500
    assert raised.value.retriable
    assert "0x80040216: An unexpected error occurred." in str(raised.value)
    assert _statuses(sim) == [500] * 3


async def test_timeouts_are_retried_then_raise_source_timeout(
    sim: Simulator, make_source: MakeSource, registry: CollectorRegistry
) -> None:
    sim.faults.latency_ms = 300

    with pytest.raises(SourceTimeout) as raised:
        await collect(make_source(request_timeout=0.05), _ACCOUNTS)

    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert sample(registry, "gateway_source_requests_total", status_class="error") == 3


async def test_connection_refused_raises_unavailable(make_source: MakeSource) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"

    with pytest.raises(SourceUnavailable) as raised:
        await collect(
            make_source(base_url=base_url, oauth_token_url=f"{base_url}/adfs/oauth2/token"), _ACCOUNTS
        )

    assert raised.value.__cause__ is not None
    assert f"127.0.0.1:{port}" in str(raised.value)


@pytest.mark.parametrize("fault", ["malformed_next", "truncate_next"])
async def test_bad_body_raises_response_error_without_retrying(
    sim: Simulator, make_source: MakeSource, fault: str
) -> None:
    sim.state.bulk_load("accounts", 3)
    setattr(sim.faults, fault, 1)

    with pytest.raises(SourceResponseError) as raised:
        await collect(make_source(), _ACCOUNTS)

    assert not raised.value.retriable
    assert raised.value.__cause__ is not None
    assert len(_statuses(sim)) == 1


async def test_dataverse_error_message_reaches_the_request_error(
    sim: Simulator, make_source: MakeSource
) -> None:
    with pytest.raises(SourceRequestError) as raised:
        await collect(make_source(), fetch("/hubs/crm/accounts?where=nosuchcolumn = 'x'"))

    assert raised.value.status == 400
    assert not raised.value.retriable
    assert "0x80060888: Could not find a property named 'nosuchcolumn'" in str(raised.value)
    assert _statuses(sim) == [400]


async def test_requests_per_connection_stay_within_max_concurrency(
    sim: Simulator, make_source: MakeSource
) -> None:
    sim.state.bulk_load("accounts", 4)
    sim.protection.limits = Limits(max_concurrent=2)  # Dataverse answers 429 past it
    sim.faults.latency_ms = 20
    source = make_source(max_concurrency=2)

    results = await asyncio.gather(*(collect(source, _ACCOUNTS) for _ in range(8)))

    assert all(sum(len(page.records) for page in pages) == 4 for pages in results)
    assert set(_statuses(sim)) == {200}


@pytest.mark.parametrize("bad", [0, 53])
def test_max_concurrency_is_bounded_by_the_dataverse_limit(make_source: MakeSource, bad: int) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        make_source(max_concurrency=bad)
