"""KIP-345 removal of a static member: a stopped consumer with a group instance id stays in its group
until its session expires; removed by its instance id, it is gone at once and the others rebalance."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from gateway.kafka.topics import TopicAdmin
from tests.conftest import wait_for

SESSION_MS = 30_000  # far longer than the test: only the removal can make the member go


def _consumer(bootstrap: str, topic: str, group: str, instance: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        group_instance_id=instance,
        client_id=instance,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
    )


async def test_a_removed_static_member_leaves_at_once_and_its_partitions_move(
    kafka_bootstrap: str, unique: str
) -> None:
    topic, group = f"static-{unique}", f"static-{unique}-group"
    async with TopicAdmin(bootstrap_servers=kafka_bootstrap, replication_factor=1) as admin:
        await admin.ensure(topic, partitions=2)
        staying = _consumer(kafka_bootstrap, topic, group, "replica-0")
        leaving = _consumer(kafka_bootstrap, topic, group, "replica-1")
        await staying.start()
        try:
            await leaving.start()
            await wait_for(
                lambda: len(staying.assignment()) == 1 and len(leaving.assignment()) == 1, within=30
            )
            await leaving.stop()  # a static member does not leave by itself
            described = await admin.describe_group(group)
            assert {m.client_id for m in described.members} == {"replica-0", "replica-1"}

            removed_at = time.monotonic()
            assert await admin.remove_static_member(group, "replica-1") is True
            await wait_for(lambda: len(staying.assignment()) == 2, within=10)
            moved = time.monotonic() - removed_at
            described = await admin.describe_group(group)
            assert [m.client_id for m in described.members] == ["replica-0"]
            # Removing it again: it is no member.
            assert await admin.remove_static_member(group, "replica-1") is False
        finally:
            await staying.stop()
    print(f"partition moved {moved:.1f} s after the removal (session {SESSION_MS / 1000:g} s)")
    assert moved < 5
