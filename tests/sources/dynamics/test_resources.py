"""Hub resources to Dataverse entity sets and primary keys."""

from __future__ import annotations

import pytest

from gateway.errors import SourceRequestError
from gateway.sim import Simulator
from gateway.sources.dynamics.entities import EntitySet, entity_set

from ._support import MakeSource, collect, fetch


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("accounts", EntitySet("accounts", "accountid")),
        ("contacts", EntitySet("contacts", "contactid")),
        ("leads", EntitySet("leads", "leadid")),
        ("opportunities", EntitySet("opportunities", "opportunityid")),
        ("tasks", EntitySet("tasks", "activityid")),
        ("notes", EntitySet("annotations", "annotationid")),
        ("activities", EntitySet("activitypointers", "activityid")),
        ("cr123_projects", EntitySet("cr123_projects", "cr123_projectid")),
    ],
)
def test_resource_maps_to_entity_set_and_primary_key(resource: str, expected: EntitySet) -> None:
    assert entity_set(resource) == expected


def test_configured_primary_key_wins() -> None:
    assert entity_set("cr123_people", "cr123_personid") == EntitySet("cr123_people", "cr123_personid")


@pytest.mark.parametrize(
    ("resource", "table"), [("notes", "annotations"), ("activities", "activitypointers"), ("tasks", "tasks")]
)
async def test_element_resources_read_their_tables(
    sim: Simulator, make_source: MakeSource, resource: str, table: str
) -> None:
    rows = [sim.state.upsert(table) for _ in range(3)]
    key = sim.state.tables[table].spec.primary_key

    pages = await collect(make_source(), fetch(f"/hubs/crm/{resource}?where=fetchChanges='true'"))

    assert sorted(r["id"] for page in pages for r in page.records) == sorted(row[key] for row in rows)
    assert [r.path for r in sim.requests][-1] == f"/api/data/v9.2/{table}"


async def test_custom_table_is_read_as_an_entity_set(sim: Simulator, make_source: MakeSource) -> None:
    with pytest.raises(SourceRequestError) as raised:  # the simulator has no custom tables
        await collect(make_source(), fetch("/hubs/crm/cr123_projects"))

    assert [r.path for r in sim.requests][-1] == "/api/data/v9.2/cr123_projects"
    assert raised.value.status == 404
    assert "Resource not found for the segment 'cr123_projects'" in str(raised.value)


async def test_cursor_of_another_organisation_starts_a_new_baseline(
    sim: Simulator, make_source: MakeSource
) -> None:
    sim.state.upsert("accounts")
    foreign = "https://other.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=1!01/01/2026 00:00:00"

    pages = await collect(
        make_source(), fetch("/hubs/crm/accounts?where=fetchChanges='true'", cursor=foreign)
    )

    assert [page.baseline for page in pages] == [True]
    assert len(pages[0].records) == 1
