"""A second deliverer joins the group while the first is busy: the first hands its partitions over
cleanly (deliveries in flight finish or are abandoned, finished ones are committed, nothing past an
undelivered event is), and every event reaches the receiver, a repeat only with the same webhook."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
from aiohttp import web
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from gateway.delivery.runner import delivery_topics, ensure_delivery_topics
from gateway.delivery.ssrf import GuardedConnector
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.metrics import DeliveryMetrics
from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    LOOPBACK,
    change,
    committed,
    consumed,
    delivering,
    produce,
    receiving,
    record_handler,
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


async def test_a_record_of_a_partition_being_handed_over_makes_no_further_attempt(
    settings: Settings, registry: CollectorRegistry
) -> None:
    """A failed attempt whose retry would wait in memory is not retried once its partition is being
    revoked: the record is cancelled, unfinished, for the partition's next owner to read again."""

    async def failing(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=500)

    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    layout = delivery_topics(settings.delivery(), topics)
    metrics = DeliveryMetrics(registry)
    async with (
        receiving(failing) as receiver,
        TopicAdmin(bootstrap_servers=settings.kafka_bootstrap_servers, replication_factor=1) as admin,
    ):
        await ensure_delivery_topics(
            admin,
            layout,
            settings.delivery_topic_partitions,
            history_retention_hours=settings.delivery_history_retention_hours,
        )
        async with (
            aiohttp.ClientSession(connector=GuardedConnector(allowed=LOOPBACK)) as session,
        ):
            instances = {"inst-1": webhook_instance("inst-1", receiver.url)}
            handler = record_handler(session, settings, layout, instances.get, metrics)
            record = consumed(f"{settings.topic_prefix}.crm.accounts", change("inst-1", 1), offset=7)
            partition = TopicPartition(record.topic, record.partition)

            handed_over = asyncio.create_task(handler.handle(record, handed_over={partition}))
            await asyncio.wait({handed_over}, timeout=10)
            assert handed_over.cancelled()
            assert len(receiver.hits) == 1

            # Still owned: the first retry waits in memory (the schedule's 0 s), the next one is parked.
            outputs = await asyncio.wait_for(handler.handle(record), timeout=10)
    assert len(receiver.hits) == 3
    assert [output.topic for output in outputs] == [layout.retry(0.2), layout.deliveries]
