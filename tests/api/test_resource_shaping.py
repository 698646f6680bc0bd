"""A resource's `select` and `formattedValues` through the API: unknown columns refused at their path
from the table's definition, read once per instance; only the selected columns reach Kafka, with their
display texts and readable lookups when asked for."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.polling._processes import free_port
from tests.polling._support import create, events, insert, only, polls

ACCOUNTS = "$.configuration['event.poller.configuration'].accounts"


def _definition_reads(sim: Simulator, entity_set: str) -> int:
    return sum(
        1
        for r in sim.requests
        if r.path.endswith("/EntityDefinitions")
        and r.query.get("$filter") == f"EntitySetName eq '{entity_set}'"
    )


async def test_a_column_the_table_lacks_is_refused_at_its_path(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = only(
        seed_instance("2016", simulator), "accounts", select=["name", "nmae", "_primarycontactid_value"]
    )
    async with api.post("/instances", json=body) as response:
        assert response.status == 400
        problems = (await response.json())["errors"]
    assert problems == [{"path": f"{ACCOUNTS}.select[1]", "message": "table accounts has no column 'nmae'"}]


async def test_the_definition_is_read_once_per_instance(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = only(seed_instance("2016", simulator), "accounts", select=["name"])
    instance_id = await create(api, body)
    patch = {
        "configuration": {"event.poller.configuration": {"accounts": {"select": ["name", "telephone1"]}}}
    }
    async with api.patch(f"/instances/{instance_id}", json=patch) as response:
        assert response.status == 200, await response.text()
    patch["configuration"]["event.poller.configuration"]["accounts"]["select"] = ["telephone9"]
    async with api.patch(f"/instances/{instance_id}", json=patch) as response:
        assert response.status == 400
        [problem] = (await response.json())["errors"]
    assert problem["path"] == f"{ACCOUNTS}.select[0]"
    assert _definition_reads(simulator, "accounts") == 1


async def test_an_organisation_that_cannot_be_asked_does_not_block_the_save(
    api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    body = only(seed_instance("2016", simulator), "accounts", select=["name"])
    body["configuration"]["dynamics.base.url"] = f"http://127.0.0.1:{free_port()}"
    async with api.post("/instances", json=body) as response:
        assert response.status == 201
        warnings = (await response.json())["warnings"]
    [unchecked] = [w for w in warnings if w["path"] == f"{ACCOUNTS}.select"]
    assert unchecked["message"].startswith("not checked against the table's columns: ")


async def test_only_the_selected_columns_reach_kafka(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    await create(api, only(seed_instance("2016", simulator), "accounts", select=["name", "telephone1"]))
    await wait_for(lambda: polls(registry, "accounts") >= 1)  # the baseline: rows made later are changes
    row = insert(simulator, "accounts", {"name": "Selected Ltd", "telephone1": "555-0100"})

    [event] = await events(settings, "accounts", expect=1)

    assert event["subject"] == row
    attributes = event["data"]["raw"]["attributes"]
    assert set(attributes) == {"name", "telephone1", "accountid", "createdon", "modifiedon"}
    assert (attributes["name"], attributes["telephone1"]) == ("Selected Ltd", "555-0100")


async def test_display_texts_and_lookups_reach_kafka_when_asked_for(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    shaped = {"select": ["name", "_primarycontactid_value"], "formattedValues": True}
    await create(api, only(seed_instance("2016", simulator), "accounts", **shaped))
    await wait_for(lambda: polls(registry, "accounts") >= 1)
    contact = insert(simulator, "contacts", {"fullname": "Nancy Anderson"})
    row = insert(simulator, "accounts", {"name": "Shaped Ltd", "_primarycontactid_value": contact})

    [event] = await events(settings, "accounts", expect=1)

    raw = event["data"]["raw"]
    assert event["subject"] == row
    assert raw["attributes"]["_primarycontactid_value"] == contact
    assert raw["formattedValues"] == {"_primarycontactid_value": "Nancy Anderson"}
    assert raw["lookups"] == {
        "primarycontactid": {"id": contact, "logicalName": "contact", "name": "Nancy Anderson"}
    }
