"""The `modifiedon` filter mode: the watermark boundary must neither lose nor repeat a change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.instances.seed_examples import SEED_RESOURCES
from tests.polling._support import create, events, insert, only, polls, settle, timestamp


async def test_seed_filter_instance_publishes_each_new_record_of_all_seven_resources_once(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, seed_instance("earlier", simulator))
    await wait_for(lambda: all(polls(registry, r) >= 1 for r in SEED_RESOURCES))
    inserted = {r: insert(simulator, r) for r in SEED_RESOURCES}
    for resource in SEED_RESOURCES:
        await settle(registry, resource)
        got = await events(settings, resource, expect=1)
        assert [(e["subject"], e["data"]["eventType"]) for e in got] == [(inserted[resource], "CREATED")]
    # The translated filter reached Dataverse: `modifiedon gt <rendered watermark>`.
    filters = {r.query.get("$filter", "") for r in simulator.requests if r.path.endswith("/accounts")}
    assert all(f.startswith("modifiedon gt 20") and f.endswith("Z") for f in filters), filters


async def test_records_sharing_one_modifiedon_split_across_polls_are_each_published_once(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("earlier", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    same_second = timestamp(datetime.now(UTC))
    stamp = {"createdon": same_second, "modifiedon": same_second}
    first = [insert(simulator, "accounts", stamp) for _ in range(3)]
    await wait_for(
        lambda: (registry.get_sample_value("gateway_events_published_total", _created()) or 0) >= 3
    )
    # Committed late with the very timestamp the watermark now sits on.
    second = [insert(simulator, "accounts", stamp) for _ in range(2)]
    await settle(registry, "accounts", more_polls=3)
    got = await events(settings, "accounts", expect=5)
    assert Counter(e["subject"] for e in got) == Counter(first + second)


async def test_a_record_committed_late_within_the_overlap_is_published_once(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("earlier", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    on_time = insert(simulator, "accounts")
    await wait_for(
        lambda: (registry.get_sample_value("gateway_events_published_total", _created()) or 0) >= 1
    )
    three_seconds_ago = timestamp(datetime.now(UTC) - timedelta(seconds=3))  # overlap is 5 s in tests
    late = insert(simulator, "accounts", {"createdon": three_seconds_ago, "modifiedon": three_seconds_ago})
    await settle(registry, "accounts", more_polls=3)
    got = await events(settings, "accounts", expect=2)
    assert Counter(e["subject"] for e in got) == Counter([on_time, late])


async def test_a_source_clock_behind_then_ahead_of_the_gateway_loses_and_repeats_nothing(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    simulator.faults.skew_seconds = -4.0
    await create(api, only(seed_instance("earlier", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    behind = [insert(simulator, "accounts") for _ in range(2)]
    await settle(registry, "accounts")
    simulator.faults.skew_seconds = 4.0
    ahead = [insert(simulator, "accounts") for _ in range(2)]
    await settle(registry, "accounts", more_polls=3)
    got = await events(settings, "accounts", expect=4)
    assert Counter(e["subject"] for e in got) == Counter(behind + ahead)


async def test_a_poll_pages_through_every_page(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("earlier", simulator), "accounts", pageSize=2))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    simulator.requests.clear()
    inserted = [insert(simulator, "accounts") for _ in range(7)]
    await settle(registry, "accounts")
    got = await events(settings, "accounts", expect=7)
    assert Counter(e["subject"] for e in got) == Counter(inserted)
    assert sum(1 for r in simulator.requests if "$skiptoken" in r.query) >= 3


def _created() -> dict[str, str]:
    return {"object_type": "accounts", "event_type": "CREATED"}
