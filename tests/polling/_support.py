"""Shared helpers of the end-to-end polling tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests._events import decode
from tests.conftest import read_committed, wait_for

EVENT_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "change-event.schema.json").read_text()
)
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


def only(body: dict[str, Any], resource: str, **overrides: Any) -> dict[str, Any]:
    """The seed body polling just `resource`, with resource options changed, so a test polls one table."""
    poller = body["configuration"]["event.poller.configuration"]
    body["configuration"]["event.poller.configuration"] = {resource: {**poller[resource], **overrides}}
    return body


async def settle(registry: CollectorRegistry, resource: str, *, more_polls: int = 2) -> None:
    """Wait until `more_polls` further polls completed, so that a duplicate, if any, would be in Kafka."""
    target = polls(registry, resource) + more_polls
    await wait_for(lambda: polls(registry, resource) >= target)


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
