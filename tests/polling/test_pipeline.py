"""End to end through the real broker: seed instance in, change events out, exactly once."""

from __future__ import annotations

from collections import Counter

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.instances.seed_examples import SEED_RESOURCES, with_poller_as_string
from tests.polling._support import HOUR_AGO, TABLES, create, events, insert, only, polls


@pytest.mark.parametrize("as_string", [False, True], ids=["object", "escaped-string"])
async def test_seed_change_tracking_instance_publishes_created_updated_deleted_for_all_seven_resources(
    settings: Settings,
    simulator: Simulator,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    as_string: bool,
) -> None:
    # Created an hour ago, so that an update now cannot look like a creation at second precision.
    an_hour_ago = {"createdon": HOUR_AGO, "modifiedon": HOUR_AGO}
    kept = {r: insert(simulator, r, an_hour_ago) for r in SEED_RESOURCES}
    doomed = {r: insert(simulator, r, an_hour_ago) for r in SEED_RESOURCES}
    body = seed_instance("2016", simulator)
    instance_id = await create(api, with_poller_as_string(body) if as_string else body)
    # The baseline call publishes nothing; wait until every resource has its delta link.
    await wait_for(lambda: all(polls(registry, r) >= 1 for r in SEED_RESOURCES))

    created = {}
    for resource in SEED_RESOURCES:
        table, _key = TABLES[resource]
        created[resource] = insert(simulator, resource)
        # A real change: a save without one publishes nothing (the row state sees it unchanged).
        column = "notetext" if resource == "notes" else "description"
        simulator.state.update(table, kept[resource], {column: "changed"})
        simulator.state.delete(table, doomed[resource])

    for resource in SEED_RESOURCES:
        got = await events(settings, resource, expect=3)
        kinds = Counter((e["data"]["eventType"], e["subject"]) for e in got)
        assert kinds == Counter(
            {
                ("CREATED", created[resource]): 1,
                ("UPDATED", kept[resource]): 1,
                ("DELETED", doomed[resource]): 1,
            }
        ), resource
        assert {e["source"] for e in got} == {f"/instances/{instance_id}"}
        age = registry.get_sample_value("gateway_checkpoint_age_seconds", {"resource": resource})
        assert age is not None
        assert 0 <= age < 30
        assert {e["type"] for e in got} == {f"crm.{resource}.{t}" for t in ("created", "updated", "deleted")}


async def test_two_writes_of_a_row_within_one_second_are_two_events_with_two_ids(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    # Dataverse dates have second precision: the two writes show the same modifiedon, and only the
    # etag tells them apart. One id for both would let a receiver that dedupes by id drop the second.
    await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    same_second = {"createdon": HOUR_AGO, "modifiedon": HOUR_AGO}
    row = insert(simulator, "accounts", same_second)
    await events(settings, "accounts", expect=1)
    simulator.state.update("accounts", row, {"description": "second write", **same_second})
    got = await events(settings, "accounts", expect=2)
    assert [e["subject"] for e in got] == [row, row]
    assert [e["data"]["raw"]["attributes"].get("description") for e in got][1] == "second write"
    assert len({e["id"] for e in got}) == 2
