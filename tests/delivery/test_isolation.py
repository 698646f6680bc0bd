"""One endpoint that hangs must not hold back the others: the breaker and the bounded backlog park
its events, and the other endpoint keeps receiving at its own rate."""

from __future__ import annotations

import asyncio
import itertools

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    Receiver,
    change,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    webhook_instance,
)

N = 1500


async def _interleave(settings: Settings, first: str, second: str) -> set[str]:
    """N events of each instance, alternating; the ids of the first's."""
    ours = [change(first, n) for n in range(N)]
    theirs = [change(second, n) for n in range(N)]
    await produce(settings, itertools.chain.from_iterable(zip(theirs, ours, strict=True)))
    return {event.id for event in ours}


def _rate(receiver: Receiver, ids: set[str]) -> float:
    times = sorted(hit.at for hit in receiver.hits if hit.webhook_id in ids)
    return (len(times) - 1) / (times[-1] - times[0])


async def test_a_hanging_endpoint_does_not_slow_down_another(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(
        settings,
        delivery_timeout_seconds=5.0,
        delivery_breaker_failures=5,
        delivery_breaker_cooldown_seconds=30.0,  # no probe during the test
        delivery_max_pending=1024,
        delivery_host_backlog=128,
    )
    release = asyncio.Event()

    async def hang(_attempt: int, _request: web.Request) -> web.StreamResponse:
        await release.wait()  # never answers in time: the deliverer gives up after 5 s
        return web.Response(status=200)

    async with receiving() as fast, receiving() as healthy, receiving(hang) as slow:
        instances = {
            "fast-a": webhook_instance("fast-a", fast.url),
            "healthy": webhook_instance("healthy", healthy.url),
            "fast-b": webhook_instance("fast-b", fast.url),
            "slow": webhook_instance("slow", slow.url),
        }
        async with delivering(settings, instances, registry):
            # Baseline: the fast endpoint's events interleaved with as many for a healthy endpoint.
            baseline_ids = await _interleave(settings, "fast-a", "healthy")
            await wait_for(lambda: fast.ids >= baseline_ids and len(healthy.ids) == N)
            baseline = _rate(fast, baseline_ids)

            # The same, but the other endpoint hangs.
            loop = asyncio.get_running_loop()
            started = loop.time()
            ids = await _interleave(settings, "fast-b", "slow")
            await wait_for(lambda: fast.ids >= ids)
            took = loop.time() - started
            rate = _rate(fast, ids)
            requests_to_slow = len(slow.hits)
            await wait_for(lambda: sample(registry, "gateway_delivery_open_circuits") == 1, within=10)
            release.set()

    print(
        f"fast beside a healthy endpoint {baseline:.0f}/s, beside a hanging one {rate:.0f}/s in {took:.2f} s"
    )
    # Long before the hanging requests time out: nothing waits for them. The rates are those of one
    # CPU-bound process that runs the receivers too, so they are compared loosely: a hanging host's
    # events cost a little CPU to park, and the first `slow_after` (0.5 s) may be slower.
    assert took < settings.delivery_timeout_seconds / 2
    assert rate > 0.35 * baseline
    assert requests_to_slow <= settings.delivery_host_concurrency  # its slots, never more
    assert sample(registry, "gateway_delivery_attempts_total", outcome="skipped", status_class="none") > 0
