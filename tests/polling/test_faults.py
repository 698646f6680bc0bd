"""A failing source fails the poll, leaves the checkpoint in place, and loses nothing."""

from __future__ import annotations

import base64
import logging
import os
from collections import Counter

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import read_committed, seed_instance, wait_for
from tests.polling._support import HOUR_AGO, create, events, insert, only, polls, settle


@pytest.mark.parametrize("fault", ["malformed_next", "truncate_next"])
async def test_a_bad_source_response_fails_the_poll_and_the_next_poll_publishes_everything_once(
    settings: Settings,
    simulator: Simulator,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    instance_id = await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    inserted = [insert(simulator, "accounts") for _ in range(3)]
    setattr(simulator.faults, fault, 1)
    with caplog.at_level(logging.WARNING, logger="gateway.polling.task"):
        await wait_for(lambda: polls(registry, "accounts", "failed") >= 1)
        await settle(registry, "accounts")
    got = await events(settings, "accounts", expect=3)
    assert Counter(e["subject"] for e in got) == Counter(inserted)
    failure = next(r for r in caplog.records if r.getMessage().startswith("poll failed"))
    assert (failure.instance_id, failure.resource, failure.error) == (  # type: ignore[attr-defined]
        instance_id,
        "accounts",
        "SourceResponseError",
    )


async def test_a_burst_of_5xx_and_a_429_are_ridden_out_within_the_poll(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    inserted = [insert(simulator, "accounts") for _ in range(2)]
    simulator.faults.fail_next = 2
    simulator.faults.throttle_next = 1
    simulator.faults.throttle_retry_after = 1
    await settle(registry, "accounts")
    got = await events(settings, "accounts", expect=2)
    assert Counter(e["subject"] for e in got) == Counter(inserted)
    assert registry.get_sample_value("gateway_source_throttled_total", {"element": "dynamicscrmadfs"}) == 1
    assert (
        registry.get_sample_value("gateway_source_retry_after_seconds_sum", {"element": "dynamicscrmadfs"})
        == 1
    )
    assert polls(registry, "accounts", "failed") == 0


async def test_snapshot_publishes_the_existing_rows_once_marked_as_such(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    existing = [
        insert(simulator, "accounts", {"createdon": HOUR_AGO, "modifiedon": HOUR_AGO}) for _ in range(3)
    ]
    await create(api, only(seed_instance("2016", simulator), "accounts", snapshot=True))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    await settle(registry, "accounts")
    got = await events(settings, "accounts", expect=3)
    assert Counter(e["subject"] for e in got) == Counter(existing)
    assert all(e["snapshot"] is True for e in got)


async def test_without_snapshot_the_baseline_publishes_nothing(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    insert(simulator, "accounts", {"createdon": HOUR_AGO, "modifiedon": HOUR_AGO})
    await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    later = insert(simulator, "accounts")
    await settle(registry, "accounts")
    got = await events(settings, "accounts", expect=1)
    assert [e["subject"] for e in got] == [later]


async def test_a_record_over_the_topics_limit_fails_every_poll_loudly_and_the_rest_waits(
    settings: Settings,
    simulator: Simulator,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 3 MB row that does not compress: under the producer's 4 MiB, over the event topic's 1 MB
    max.message.bytes. Retrying cannot help, so it is an error log and a metric to alert on, each
    naming the resource, the size and the limit; nothing of the poll is committed, nor the rows after."""
    await create(api, only(seed_instance("earlier", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    insert(simulator, "accounts", {"description": base64.b64encode(os.urandom(2_300_000)).decode()})
    insert(simulator, "accounts")
    labels = {"resource": "accounts", "record": "event"}
    with caplog.at_level(logging.ERROR, logger="gateway.polling.task"):
        await wait_for(
            lambda: (registry.get_sample_value("gateway_records_too_large_total", labels) or 0) >= 2
        )
    failure = next(
        r for r in caplog.records if r.levelno == logging.ERROR and r.getMessage().startswith("poll failed")
    )
    topic = f"{settings.topic_prefix}.crm.accounts"
    assert (failure.resource, failure.error, failure.topic, failure.limit) == (  # type: ignore[attr-defined]
        "accounts",
        "RecordTooLarge",
        topic,
        1_048_588,  # the broker's default, which the gateway's topics keep
    )
    assert failure.size > 1_048_588  # type: ignore[attr-defined]
    assert f"resource 'accounts': a record of {failure.size} bytes" in failure.getMessage()  # type: ignore[attr-defined]
    assert "is over the limit of 1048588 bytes" in failure.getMessage()
    assert polls(registry, "accounts", "failed") >= 2
    assert await read_committed(settings.kafka_bootstrap_servers, topic, expect=0, within=1) == []


async def test_a_checkpoint_record_over_the_bound_fails_the_poll_before_anything_is_sent(
    settings: Settings,
    simulator: Simulator,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Parts bound the seen-set, not one id: an id field of 1.01 MB (here a text column taken as the id)
    makes one seen pair larger than any checkpoint record may be. Its event would pass (it compresses),
    so the gateway's own bound is what stops the poll, naming it."""
    await create(api, only(seed_instance("earlier", simulator), "accounts", idField="attributes.description"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    insert(simulator, "accounts", {"description": "x" * 1_010_000})
    labels = {"resource": "accounts", "record": "checkpoint"}
    with caplog.at_level(logging.ERROR, logger="gateway.polling.task"):
        await wait_for(
            lambda: (registry.get_sample_value("gateway_records_too_large_total", labels) or 0) >= 1
        )
    failure = next(
        r for r in caplog.records if r.levelno == logging.ERROR and r.getMessage().startswith("poll failed")
    )
    assert (failure.topic, failure.limit) == (f"{settings.state_topic_prefix}.checkpoints", 1_000_000)  # type: ignore[attr-defined]
    assert failure.size > 1_010_000  # type: ignore[attr-defined]
    topic = f"{settings.topic_prefix}.crm.accounts"
    assert await read_committed(settings.kafka_bootstrap_servers, topic, expect=0, within=1) == []
