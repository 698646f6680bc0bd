"""Rate limits per subscription: a limited endpoint receives its events no faster than its rate,
each once and none lost, while the instance's unlimited callback gets the same events at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.delivery.rate_limits import MAX_WAIT, RateLimits
from gateway.errors import RateLimited
from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    change,
    dead_letters,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    subscribed,
    subscription,
    webhook_instance,
)

RATE = 20.0
N = 60


class _Stalls:
    """The longest the event loop was late waking a short sleeper: sends due in that time arrive
    together, so it bounds how many turns a stall bunches into one second of receipts."""

    def __init__(self) -> None:
        self.worst = 0.0


@contextlib.asynccontextmanager
async def _watching_stalls() -> AsyncIterator[_Stalls]:
    stalls = _Stalls()
    loop = asyncio.get_running_loop()

    async def watch() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            stalls.worst = max(stalls.worst, loop.time() - before - 0.01)

    watcher = asyncio.create_task(watch())
    try:
        yield stalls
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(
    rate=st.floats(min_value=0.01, max_value=10_000),
    gaps=st.lists(st.floats(min_value=0, max_value=2.0), min_size=1, max_size=200),
)
def test_turns_are_spaced_by_the_rate_within_the_wait_bound(rate: float, gaps: list[float]) -> None:
    clock = _Clock()
    limits = RateLimits(clock=clock)
    starts: list[float] = []  # when each request that took a turn is sent
    for gap in gaps:
        clock.now += gap
        idle = not starts or starts[-1] + 1 / rate <= clock.now
        try:
            wait = limits.take_turn("i/s", rate)
        except RateLimited as exc:
            refused = exc
        else:
            assert 0 <= wait <= MAX_WAIT
            assert wait == 0 or not idle
            starts.append(clock.now + wait)
            continue
        assert not idle, "refused while its turn was free"
        assert refused.retry_after > MAX_WAIT
    assert starts, "the first call always has its turn"
    assert all(b - a >= (1 / rate) * (1 - 1e-9) for a, b in itertools.pairwise(starts))


def test_a_refused_call_takes_no_turn_and_targets_have_their_own() -> None:
    clock = _Clock()
    limits = RateLimits(clock=clock)
    rate = 64.0  # turns 1/64 s apart add up exactly
    within = [limits.take_turn("i/s", rate) for _ in range(int(MAX_WAIT * rate) + 1)]
    assert within[-1] == pytest.approx(MAX_WAIT)
    with pytest.raises(RateLimited) as raised:
        limits.take_turn("i/s", rate)
    assert raised.value.retry_after == pytest.approx(MAX_WAIT + 1 / rate)
    assert not raised.value.attempted
    assert limits.take_turn("i/other", rate) == 0
    clock.now += 2 / rate  # the refused call took no turn: the one after the last taken is next
    assert limits.take_turn("i/s", rate) == pytest.approx(MAX_WAIT - 1 / rate)


async def test_a_limited_subscription_gets_its_events_at_its_rate_and_the_callback_at_once(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)
    async with receiving() as own, receiving() as limited:
        base = webhook_instance("limited", own.url)
        instance = subscribed(base, [subscription("slow", limited.url, rateLimit=RATE)])
        async with delivering(settings, {instance.id: instance}, registry), _watching_stalls() as stalls:
            loop = asyncio.get_running_loop()
            started = loop.time()
            events = [change(instance.id, n) for n in range(N)]
            await produce(settings, events)
            wanted = {event.id for event in events}
            await wait_for(lambda: own.ids == wanted, within=30)
            own_done = loop.time() - started
            await wait_for(lambda: limited.ids == wanted, within=60)
            limited_done = loop.time() - started
            letters = await dead_letters(settings, expect=0)

    times = sorted(hit.at for hit in limited.hits)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    print(
        f"{N} events: the callback had them all after {own_done:.2f} s; the subscription limited to"
        f" {RATE:g}/s after {limited_done:.2f} s, its first to last over {times[-1] - times[0]:.2f} s,"
        f" at most {busiest} in one second (event loop stalled up to {stalls.worst:.2f} s);"
        f" {sample(registry, 'gateway_delivery_deferred_total', outcome='rate-limited'):g} parkings"
    )
    assert len(limited.hits) == N  # each once: a parked turn is not an attempt, nor a duplicate
    assert times[-1] - times[0] >= (N - 1) / RATE - 0.01
    # one turn each 1/RATE s; a stalled loop delivers the turns due meanwhile together
    assert busiest <= RATE + 1 + math.ceil(RATE * stalls.worst)
    assert own_done < limited_done
    assert sample(registry, "gateway_delivery_deferred_total", outcome="rate-limited") > 0
    assert (
        sample(registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx") == 2 * N
    )
    assert letters == []
