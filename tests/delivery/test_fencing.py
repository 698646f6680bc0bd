"""A deliverer paused past its session (SIGSTOP) comes back as a zombie: it still holds parked
retries and dead letters it finished but never committed. The partition's new owner has meanwhile
delivered, parked and dead-lettered the same events and committed them, and then events the zombie
never read. When the zombie resumes, none of its writes becomes visible: every event is parked, or
dead-lettered, exactly once, and the committed offset is not moved back to where the zombie was."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from gateway.delivery.runner import delivery_topics
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.settings import Settings
from tests.conftest import read_committed, wait_for
from tests.delivery._support import (
    change,
    committed,
    dead_letters,
    deliverer_process,
    delivering,
    delivery_settings,
    produce,
    receiving,
    webhook_instance,
)

N = 40  # events: half parked (their receiver fails twice), half dead-lettered (a refused callback)
LATE = 10  # refused events written while the zombie is paused: the new owner commits past the zombie
RETRY_TIER = 5.0  # the one scheduled retry: a failed first attempt is parked for 5 s


async def test_a_deliverer_resumed_after_its_session_expired_writes_no_park_and_no_dead_letter_twice(
    settings: Settings, registry: CollectorRegistry, tmp_path: Path
) -> None:
    settings = delivery_settings(
        settings,
        topic_partitions=1,  # one event partition: its head holds every later commit back
        retry_schedule=[RETRY_TIER],
        # The head's first request outlives the pause: the zombie finishes it after it resumes.
        delivery_timeout_seconds=120.0,
    )
    layout = delivery_topics(
        settings.delivery(), TopicNames(settings.topic_prefix, settings.state_topic_prefix)
    )
    release_head = asyncio.Event()
    head_answered = asyncio.Event()
    events = [change("parked" if n % 2 == 0 else "refused", n) for n in range(N)]
    head = events[0].id

    async def fail_twice(attempt: int, request: web.Request) -> web.StreamResponse:
        if request.headers["webhook-id"] == head and attempt == 1:
            await release_head.wait()  # the zombie's request, in flight through the pause
            head_answered.set()
        return web.Response(status=500 if attempt <= 2 else 204)

    async with receiving(fail_twice) as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        urls = {
            "parked": receiver.url,
            "refused": f"http://[::1]:{port}/hooks",  # not in the allowed networks: dead-lettered at once
        }
        instances = {key: webhook_instance(key, url) for key, url in urls.items()}
        parked = [event for event in events if event.instance_id == "parked"]
        refused = [event for event in events if event.instance_id == "refused"]
        topic = await produce(settings, events)

        async with deliverer_process(settings, urls, tmp_path) as zombie:
            # The first deliverer has failed every parked event's first attempt (so it holds their
            # parks), except the head's, which hangs: nothing behind it can be committed.
            await wait_for(lambda: all(receiver.for_id(event.id) for event in parked), within=30)
            zombie.send_signal(signal.SIGSTOP)
            try:
                async with delivering(settings, instances, registry):
                    # The new owner starts once the zombie's session has expired; it delivers
                    # everything again, parks each parked event once and commits the lot.
                    letters = await dead_letters(settings, expect=len(refused), within=60)
                    assert sorted(letter.event_id for letter in letters) == sorted(e.id for e in refused)

                    async def new_owner_committed() -> bool:
                        return (await committed(settings, topic)).get(0) == N

                    await wait_for(new_owner_committed, within=30)
                    assert all(len(receiver.for_id(event.id)) >= 2 for event in parked)
                    # Events the zombie never read: the offset it would commit is now behind.
                    late = [change("refused", n) for n in range(N, N + LATE)]
                    refused += late
                    await produce(settings, late)
                    await dead_letters(settings, expect=len(refused), within=30)

                    async def committed_late() -> bool:
                        return (await committed(settings, topic)).get(0) == N + LATE

                    await wait_for(committed_late, within=30)
                    zombie.send_signal(signal.SIGCONT)
                    release_head.set()
                    await wait_for(head_answered.is_set, within=10)

                    # The zombie finished the head: its window is complete, its commit is due. It
                    # tries it before it rejoins (its revocation commits), so once both are members
                    # again, whatever it could make visible is visible.
                    async with TopicAdmin(
                        bootstrap_servers=settings.kafka_bootstrap_servers, replication_factor=1
                    ) as admin:

                        async def both_members() -> bool:
                            group = await admin.describe_group(layout.group_id)
                            return group.state == "Stable" and len(group.members) == 2

                        await wait_for(both_members, within=60)
                    # It does try to commit (periodically, or in its revocation): refused as fenced,
                    # or, unfenced, landed with its parks.
                    log = tmp_path / "deliverer.log"

                    async def zombie_tried() -> bool:
                        if "ProducerFenced" in log.read_text():
                            return True
                        return await _visible(settings, layout.retry(RETRY_TIER)) > len(parked)

                    await wait_for(zombie_tried, within=30)
                    # Every park was delivered from its tier: the receiver's third attempt succeeds.
                    await wait_for(lambda: all(len(receiver.for_id(e.id)) >= 3 for e in parked), within=30)
            finally:
                if zombie.returncode is None:
                    zombie.send_signal(signal.SIGCONT)

    parks = await read_committed(
        settings.kafka_bootstrap_servers, layout.retry(RETRY_TIER), expect=len(parked), within=20
    )
    letters_written = await read_committed(
        settings.kafka_bootstrap_servers, layout.dead_letters, expect=len(refused), within=20
    )
    park_counts = Counter(record.value for record in parks)
    letter_counts = Counter(record.key for record in letters_written)
    offset = (await committed(settings, topic)).get(0)
    print(
        f"{len(parks)} parks of {len(parked)} events, {len(letters_written)} dead letters of "
        f"{len(refused)} events, {len(receiver.hits)} requests, offset committed at {offset} of {N + LATE}"
    )
    assert len(park_counts) == len(parked)
    assert [count for count in park_counts.values() if count > 1] == []
    # A zombie's offset that landed would also show here: it moves the partition back to N, and the
    # owner then dead-letters the late events a second time (the rewind itself may last a moment).
    assert len(letter_counts) == len(refused)
    assert [count for count in letter_counts.values() if count > 1] == []
    assert offset == N + LATE
    assert "ProducerFenced" in log.read_text()  # the zombie's commit was refused, not merely not tried


async def _visible(settings: Settings, topic: str) -> int:
    """How many records of `topic` a read_committed consumer sees now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.delivery_topic_partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        count = 0
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                count += len(records)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return count
    finally:
        await consumer.stop()
