"""SIGKILL the deliverer with thousands of events in flight: after a restart every event has been
received at least once, and a duplicate carries the same webhook-id as the original."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    change,
    committed,
    deliverer_process,
    delivering,
    delivery_settings,
    produce,
    receiving,
    webhook_instance,
)

N = 10_000


async def test_a_killed_deliverer_loses_nothing_and_repeats_with_the_same_ids(
    settings: Settings, registry: CollectorRegistry, tmp_path: Path
) -> None:
    # Static membership: the restarted deliverer takes the killed one's place at once, instead of
    # waiting out the session timeout (10 s) of a member that will never answer again.
    settings = delivery_settings(settings, group_instance_id="crash-test-replica")
    clock = asyncio.get_running_loop().time
    began = clock()
    async with receiving() as receiver:
        events = [change("inst-1", n) for n in range(N)]
        topic = await produce(settings, events)
        produced = clock()
        async with deliverer_process(settings, {"inst-1": receiver.url}, tmp_path) as process:
            ready = clock()
            await wait_for(lambda: len(receiver.hits) >= N // 3, within=30)
            killed = clock()
            process.kill()  # SIGKILL: no shutdown, no last commit
            await process.wait()
        before_restart = len(receiver.hits)

        instances = {"inst-1": webhook_instance("inst-1", receiver.url)}
        async with delivering(settings, instances, registry):
            await wait_for(lambda: len(receiver.ids) == N, within=45)
            done = clock()

            async def all_committed() -> bool:
                return sum(offset or 0 for offset in (await committed(settings, topic)).values()) == N

            await wait_for(all_committed, within=10)

    assert receiver.ids == {event.id for event in events}
    for hit in receiver.hits:
        assert hit.json()["message"]["eventId"] == hit.webhook_id
    repeats = Counter(hit.webhook_id for hit in receiver.hits)
    duplicates = sum(count - 1 for count in repeats.values())
    print(
        f"produced {N} in {produced - began:.1f} s; deliverer process ready {ready - produced:.1f} s later; "
        f"SIGKILL {killed - ready:.1f} s later, after {before_restart} requests; the rest in "
        f"{done - killed:.1f} s; {len(receiver.hits)} requests in all, {duplicates} duplicates"
    )
    bodies: dict[str, bytes] = {}
    for hit in receiver.hits:
        assert bodies.setdefault(hit.webhook_id, hit.body) == hit.body  # a duplicate is the same webhook
