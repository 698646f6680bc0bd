"""The filter mode's check for deleted rows: a `modifiedon` filter cannot see a delete, so every
`deletesCheckInterval` the table's ids are listed and the rows gone since they were published are
published as DELETED, once."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.polling._support import create, events, insert, only, polls

_EVERY_SECOND = 1 / 60  # minutes


def _found(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gateway_deleted_rows_found_total", {"resource": "accounts"}) or 0.0


def _id_listings(simulator: Simulator) -> int:
    return sum(
        1
        for r in simulator.requests
        if r.path.endswith("/accounts") and r.query.get("$select") == "accountid"
    )


async def test_a_row_deleted_at_the_source_is_published_as_deleted_once(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    body = only(seed_instance("earlier", simulator), "accounts", deletesCheckInterval=_EVERY_SECOND)
    await create(api, body)
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    kept, doomed = insert(simulator, "accounts"), insert(simulator, "accounts")
    await events(settings, "accounts", expect=2)

    simulator.state.delete("accounts", doomed)
    await wait_for(lambda: _found(registry) >= 1)
    listings = _id_listings(simulator)
    await wait_for(lambda: _id_listings(simulator) >= listings + 2)  # two more checks find nothing new

    got = await events(settings, "accounts", expect=3)
    assert [(e["subject"], e["data"]["eventType"]) for e in got][2:] == [(doomed, "DELETED")]
    assert _found(registry) == 1
    assert kept in {e["subject"] for e in got}


async def test_no_check_when_switched_off(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("earlier", simulator), "accounts", deletesCheckInterval=0))
    target = polls(registry, "accounts") + 3
    await wait_for(lambda: polls(registry, "accounts") >= target)
    assert _id_listings(simulator) == 0
