"""Polls that find nothing: they commit no Kafka transaction, yet a successor resumes exactly where they
left off. Every change-tracking answer carries a new cursor; only the first one, and one after changes,
must be committed at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.polling import task
from gateway.runtime import start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.polling._support import create, events, insert, only, polls


def _committed(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gateway_kafka_transactions_total", {"outcome": "committed"}) or 0.0


def _after(registry: CollectorRegistry, more: int) -> Callable[[], bool]:
    target = polls(registry, "accounts") + more
    return lambda: polls(registry, "accounts") >= target


async def test_empty_polls_commit_nothing_and_the_next_change_is_published_once(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    baseline = _committed(registry)  # the first cursor is committed at once
    baseline_at = time.time()
    assert baseline >= 1
    await wait_for(_after(registry, 3))
    assert _committed(registry) == baseline
    # The empty polls committed nothing, yet each moved the checkpoint's age: alerts on it work as in
    # filter mode, where every poll commits.
    age = registry.get_sample_value("gateway_checkpoint_age_seconds", {"resource": "accounts"})
    assert age is not None
    assert age < time.time() - baseline_at

    created = insert(simulator, "accounts")
    (event,) = await events(settings, "accounts", expect=1)
    assert event["subject"] == created
    assert _committed(registry) == baseline + 1


async def test_a_fresh_cursor_alone_is_committed_once_it_has_waited_long_enough(
    settings: Settings,
    simulator: Simulator,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(task, "_CURSOR_STORE_SECONDS", 2.0)
    await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    baseline = _committed(registry)
    await wait_for(lambda: _committed(registry) > baseline, within=10)


async def test_a_successor_resumes_from_the_committed_cursor_and_misses_nothing(
    settings: Settings, simulator: Simulator
) -> None:
    body = only(seed_instance("2016", simulator), "accounts")
    first = CollectorRegistry()
    async with start_gateway(settings, registry=first) as gateway:
        headers = {"Authorization": f"Bearer {gateway.admin_token}"}
        async with aiohttp.ClientSession(base_url=gateway.api_url, headers=headers) as api:
            await create(api, body)
        await wait_for(_after(first, 4))  # the baseline, then empty polls whose cursors wait
    created = insert(simulator, "accounts")
    second = CollectorRegistry()
    async with start_gateway(settings, registry=second):
        got = await events(settings, "accounts", expect=1)
        await wait_for(_after(second, 2))
        got = await events(settings, "accounts", expect=1)
    assert [e["subject"] for e in got] == [created]
