"""What each kind of answer leads to, attempt by attempt (schedule in tests: 0, 0.2 s, 0.5 s;
the immediate retry waits in memory, the later ones in the 0.2 s and 0.5 s retry tiers)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from email.utils import formatdate

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.delivery.attempt import parse_retry_after
from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    Hit,
    change,
    dead_letters,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    webhook_instance,
)

_JITTER_LOW = 0.8  # delays are jittered by ±20 %
_SLACK = 0.05  # clocks: the receiver's arrival time against the deliverer's decision time


def _gaps(hits: list[Hit]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(hits)]


def _assert_follows_schedule(gaps: list[float]) -> None:
    """Retry 1 at once (in memory), retry 2 after 0.2 s and retry 3 after 0.5 s (both parked)."""
    schedule = [0.0, 0.2, 0.5]
    for gap, delay in zip(gaps, schedule, strict=False):
        assert gap >= delay * _JITTER_LOW - _SLACK, gaps
        assert gap < delay * 1.2 + 1.5, gaps  # generous: a tier partition is read within its fetch wait


async def test_a_receiver_that_fails_twice_gets_the_third_attempt(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)

    async def flaky(attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=500 if attempt <= 2 else 204)

    async with receiving(flaky) as receiver:
        event = change("inst-1", 1)
        await produce(settings, [event])
        async with delivering(settings, {"inst-1": webhook_instance("inst-1", receiver.url)}, registry):
            await wait_for(
                lambda: (
                    sample(
                        registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx"
                    )
                    == 1
                )
            )
    hits = receiver.for_id(event.id)
    assert len(hits) == 3
    _assert_follows_schedule(_gaps(hits))
    assert sample(registry, "gateway_delivery_attempts_total", outcome="failed", status_class="5xx") == 2
    assert sample(registry, "gateway_delivery_parked_total", tier="0.2") == 1
    assert sample(registry, "gateway_delivery_dead_letters_total", reason="retries-exhausted") == 0


async def test_410_disables_the_instance_keeps_its_events_and_a_patch_enables_it_again(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)

    async def gone(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=410)

    async with receiving(gone) as old, receiving() as new:
        instances = {"inst-1": webhook_instance("inst-1", old.url)}
        first, second, third = (change("inst-1", n) for n in range(3))
        async with delivering(settings, instances, registry) as deliverer:
            await produce(settings, [first])
            letters = await dead_letters(settings, expect=1)
            assert [
                (d.event_id, d.reason, d.attempts, d.last.status if d.last else None) for d in letters
            ] == [(first.id, "endpoint-gone", 1, 410)]
            assert sample(registry, "gateway_delivery_disabled_instances") == 1
            # Disabled: the next event is kept without a request.
            await produce(settings, [second])
            letters = await dead_letters(settings, expect=2)
            assert {d.event_id: d.attempts for d in letters} == {first.id: 1, second.id: 0}
            assert len(old.hits) == 1

            # A PATCH (here: a new callback URL) lifts it; then the kept events are replayed.
            instances["inst-1"] = webhook_instance("inst-1", new.url)
            await produce(settings, [third])
            await wait_for(lambda: third.id in new.ids)
            assert sample(registry, "gateway_delivery_disabled_instances") == 0
            replayed = await deliverer.dead_letters.replay("inst-1")
            assert {d.event_id for d in replayed} == {first.id, second.id}
            await wait_for(lambda: new.ids == {first.id, second.id, third.id})
            assert await deliverer.dead_letters.find("inst-1") == []
    assert len(old.hits) == 1
    assert len(new.hits) == 3
    assert sample(registry, "gateway_delivery_replays_total") == 2


async def test_429_is_retried_after_its_retry_after(settings: Settings, registry: CollectorRegistry) -> None:
    settings = delivery_settings(settings)

    async def throttled(attempt: int, _request: web.Request) -> web.StreamResponse:
        if attempt == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=200)

    async with receiving(throttled) as receiver:
        event = change("inst-1", 1)
        await produce(settings, [event])
        async with delivering(settings, {"inst-1": webhook_instance("inst-1", receiver.url)}, registry):
            await wait_for(lambda: len(receiver.hits) == 2)
    (gap,) = _gaps(receiver.for_id(event.id))
    assert 1.0 - _SLACK <= gap < 3.0  # the schedule alone would have retried at once
    assert sample(registry, "gateway_delivery_attempts_total", outcome="throttled", status_class="4xx") == 1


def test_retry_after_is_read_as_seconds_or_a_date_and_clamped() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now=now, most=60) == 7
    assert parse_retry_after("3600", now=now, most=60) == 60
    assert parse_retry_after("-3", now=now, most=60) == 0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now, most=60) == 30
    assert parse_retry_after("soon", now=now, most=60) is None
    assert parse_retry_after(None, now=now, most=60) is None


async def test_timeouts_are_retried(settings: Settings, registry: CollectorRegistry) -> None:
    settings = delivery_settings(settings, delivery_timeout_seconds=0.3)

    async def slow_twice(attempt: int, _request: web.Request) -> web.StreamResponse:
        if attempt <= 2:
            await asyncio.sleep(1.0)  # simulates a receiver that answers after the 0.3 s timeout
        return web.Response(status=200)

    async with receiving(slow_twice) as receiver:
        event = change("inst-1", 1)
        await produce(settings, [event])
        async with delivering(settings, {"inst-1": webhook_instance("inst-1", receiver.url)}, registry):
            await wait_for(
                lambda: (
                    sample(
                        registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx"
                    )
                    == 1
                )
            )
    hits = receiver.for_id(event.id)
    assert len(hits) == 3
    assert sample(registry, "gateway_delivery_attempts_total", outcome="timeout", status_class="none") == 2
    gaps = _gaps(hits)
    assert all(gap >= 0.3 - _SLACK for gap in gaps), gaps  # each waited out its 0.3 s timeout first


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_retried_then_dead_lettered(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)
    port = _closed_port()
    event = change("inst-1", 1)
    await produce(settings, [event])
    url = f"http://127.0.0.1:{port}/hooks?token=s3cret"
    async with delivering(settings, {"inst-1": webhook_instance("inst-1", url)}, registry):
        (letter,) = await dead_letters(settings, expect=1)
    assert (letter.event_id, letter.reason, letter.attempts) == (event.id, "retries-exhausted", 4)
    assert [h.outcome for h in letter.history] == ["unreachable"] * 4
    assert all(f"127.0.0.1:{port}" in (h.error or "") for h in letter.history)
    assert "s3cret" not in str(letter.to_json())
    _assert_follows_schedule([(b.at_ms - a.at_ms) / 1000 for a, b in itertools.pairwise(letter.history)])
    assert (
        sample(registry, "gateway_delivery_attempts_total", outcome="unreachable", status_class="none") == 4
    )


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_redirects_are_failures_and_are_not_followed(
    settings: Settings, registry: CollectorRegistry, status: int
) -> None:
    settings = delivery_settings(settings)

    async def redirect(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    async with receiving(redirect) as receiver:
        event = change("inst-1", 1)
        await produce(settings, [event])
        async with delivering(settings, {"inst-1": webhook_instance("inst-1", receiver.url)}, registry):
            (letter,) = await dead_letters(settings, expect=1)
    assert [hit.path for hit in receiver.hits] == ["/hooks/in"] * 4
    _assert_follows_schedule(_gaps(receiver.hits))
    assert (letter.reason, letter.attempts, letter.last.status if letter.last else None) == (
        "retries-exhausted",
        4,
        status,
    )
    assert sample(registry, "gateway_delivery_attempts_total", outcome="failed", status_class="3xx") == 4


async def test_pending_deliveries_of_a_deleted_instance_are_dropped_and_counted(
    settings: Settings, registry: CollectorRegistry
) -> None:
    instances = {}

    async def fail_then_forget(_attempt: int, _request: web.Request) -> web.StreamResponse:
        instances.pop("inst-1", None)  # deleted while its event waits for a retry
        return web.Response(status=503)

    async with receiving(fail_then_forget) as receiver:
        instances["inst-1"] = webhook_instance("inst-1", receiver.url)
        parked, never = change("inst-1", 1), change("never-existed", 1)
        await produce(settings, [parked, never])
        async with delivering(settings, instances, registry, unknown_instance_grace=0.2):
            await wait_for(
                lambda: sample(registry, "gateway_delivery_dropped_total", reason="instance-deleted") == 2
            )
    assert [hit.webhook_id for hit in receiver.hits] == [parked.id]  # the retry was not attempted
    assert sample(registry, "gateway_delivery_attempts_total", outcome="throttled", status_class="5xx") == 1
    assert sample(registry, "gateway_delivery_dead_letters_total", reason="retries-exhausted") == 0


async def test_cookies_a_receiver_sets_are_not_sent_back(
    settings: Settings, registry: CollectorRegistry
) -> None:
    """A webhook carries only what the instance configures: a cookie one receiver sets must not ride
    along on later webhooks, to it or to another instance's receiver on the same host."""
    # One request at a time, so that every later request could carry the first answer's cookie.
    settings = delivery_settings(settings).model_copy(update={"delivery_host_concurrency": 1})

    async def sets_a_cookie(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"Set-Cookie": "session=abc; Path=/"})

    async with receiving(sets_a_cookie) as receiver:
        events = [change("inst-1", n) for n in range(5)]
        await produce(settings, events)
        # By name: aiohttp's default jar would drop cookies of an IP address anyway.
        by_name = receiver.url.replace("127.0.0.1", "localhost")
        async with delivering(settings, {"inst-1": webhook_instance("inst-1", by_name)}, registry):
            await wait_for(lambda: len(receiver.hits) >= len(events))
    assert {hit.headers.get("Cookie") for hit in receiver.hits} == {None}
    assert not any(name in receiver.hits[0].headers for name in ("Accept", "Accept-Encoding"))
