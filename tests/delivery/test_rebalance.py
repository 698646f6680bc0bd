"""A second deliverer joins the group while the first is busy: the first hands its partitions over
cleanly (deliveries in flight finish or are abandoned, finished ones are committed, nothing past an
undelivered event is), and every event reaches the receiver, a repeat only with the same webhook."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    change,
    committed,
    delivering,
    produce,
    receiving,
    sample,
    webhook_instance,
)

N = 1_500
# 8 in flight: about 160 webhooks/s, so that the first is still busy when the rebalance is done (it
# notices the join at its next heartbeat, up to 3 s later)
ANSWER_SECONDS = 0.05


async def slow(_attempt: int, _request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(ANSWER_SECONDS)  # the receiver's own work, not a synchronisation
    return web.Response(status=204)


def _delivered(registry: CollectorRegistry) -> float:
    return sample(registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx")


async def test_a_joining_deliverer_takes_partitions_over_without_losing_or_changing_webhooks(
    settings: Settings,
) -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    async with receiving(slow) as receiver:
        events = [change("inst-1", n) for n in range(N)]
        topic = await produce(settings, events)
        instances = {"inst-1": webhook_instance("inst-1", receiver.url)}
        async with delivering(settings, instances, first):
            await wait_for(lambda: len(receiver.hits) >= N // 6, within=30)
            joined_at = len(receiver.hits)
            async with delivering(settings, instances, second):
                await wait_for(lambda: receiver.ids == {event.id for event in events}, within=60)

                async def all_committed() -> bool:
                    return sum(offset or 0 for offset in (await committed(settings, topic)).values()) == N

                await wait_for(all_committed, within=15)

    assert joined_at < N  # the second joined while there was work left
    # Each took a share: the rebalance really moved partitions.
    shares = (_delivered(first), _delivered(second))
    assert min(shares) > 0, (joined_at, shares)
    # Requests in flight finished within the grace and were committed; events waiting for a slot
    # had sent nothing: no webhook was sent twice.
    repeats = Counter(hit.webhook_id for hit in receiver.hits)
    assert sum(count - 1 for count in repeats.values()) == 0
    bodies: dict[str, bytes] = {}
    for hit in receiver.hits:
        assert hit.json()["message"]["eventId"] == hit.webhook_id
        assert bodies.setdefault(hit.webhook_id, hit.body) == hit.body  # a repeat is the same webhook
