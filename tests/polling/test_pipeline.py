"""End to end through the real broker: seed instance in, change events out, exactly once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.events import decode
from gateway.runtime import Endpoints, start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import ADMIN_TOKEN, read_committed, seed_instance, wait_for
from tests.instances.seed_examples import SEED_RESOURCES, with_poller_as_string

EVENT_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text())
# resource -> (entity set, primary key), as the Dataverse tables name them
TABLES = {
    "accounts": ("accounts", "accountid"),
    "contacts": ("contacts", "contactid"),
    "opportunities": ("opportunities", "opportunityid"),
    "leads": ("leads", "leadid"),
    "tasks": ("tasks", "activityid"),
    "notes": ("annotations", "annotationid"),
    "activities": ("activitypointers", "activityid"),
}


HOUR_AGO = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def insert(sim: Simulator, resource: str, fields: dict[str, Any] | None = None) -> str:
    table, key = TABLES[resource]
    return str(sim.state.upsert(table, fields)[key])


@pytest.fixture
async def gateway(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[Endpoints]:
    async with start_gateway(settings, registry=registry) as endpoints:
        yield endpoints


@pytest.fixture
async def api(gateway: Endpoints) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as session:
        yield session


async def create(api: aiohttp.ClientSession, body: dict[str, Any]) -> str:
    async with api.post("/instances", json=body) as response:
        payload = await response.json()
        assert response.status == 201, payload
        return str(payload["id"])


def polls(registry: CollectorRegistry, resource: str, outcome: str = "ok") -> float:
    return registry.get_sample_value("gateway_polls_total", {"resource": resource, "outcome": outcome}) or 0.0


async def events(settings: Settings, object_type: str, *, expect: int) -> list[dict[str, Any]]:
    topic = f"{settings.topic_prefix}.crm.{object_type}"
    records = await read_committed(settings.kafka_bootstrap_servers, topic, expect=expect)
    decoded = [decode(r.value or b"", r.headers) for r in records]
    for event in decoded:
        jsonschema.validate(event, EVENT_SCHEMA)
    return decoded


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
        simulator.state.update(table, kept[resource], {})
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
        assert {e["type"] for e in got} == {f"crm.{resource}.{t}" for t in ("created", "updated", "deleted")}
