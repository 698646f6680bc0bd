"""A resource's `select`: the Web API's `$select`, and the table definitions that check its columns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sim import Simulator
from gateway.sources.dynamics.metadata import TableColumns

from ._support import MakeSource, collect, fetch

_ALWAYS = {"accountid", "createdon", "modifiedon"}


@pytest.mark.parametrize("hub_url", ["/hubs/crm/accounts?where=fetchChanges='true'", "/hubs/crm/accounts"])
async def test_only_the_selected_columns_and_those_every_poll_reads_are_fetched(
    sim: Simulator, make_source: MakeSource, hub_url: str
) -> None:
    sim.state.bulk_load("accounts", 3)

    pages = await collect(make_source(), fetch(hub_url, select=("name", "_primarycontactid_value")))

    records = [record for page in pages for record in page.records]
    assert len(records) == 3
    assert all(set(r["attributes"]) == {"name", "_primarycontactid_value", *_ALWAYS} for r in records)
    query = sim.requests[-1].query
    assert query["$select"] == "name,_primarycontactid_value,accountid,createdon,modifiedon"


async def test_a_delta_link_keeps_the_selection(sim: Simulator, make_source: MakeSource) -> None:
    source = make_source()
    hub_url = "/hubs/crm/accounts?where=fetchChanges='true'"
    baseline = await collect(source, fetch(hub_url, select=("name",)))
    row = sim.state.upsert("accounts")

    pages = await collect(source, fetch(hub_url, cursor=baseline[-1].cursor, select=("name",)))

    [record] = [record for page in pages for record in page.records]
    assert record["id"] == row["accountid"]
    assert set(record["attributes"]) == {"name", *_ALWAYS}


async def test_table_columns_come_from_the_definition_once(sim: Simulator, make_source: MakeSource) -> None:
    source = make_source()
    resource = fetch("/hubs/crm/notes", select=("subject",)).resource

    first = await source.table_columns(resource)
    again = await source.table_columns(resource)

    assert first is not None
    assert again == first
    assert first.entity_set == "annotations"
    assert [first.has(c) for c in ("subject", "_objectid_value", "nmae")] == [True, True, False]
    definitions = [r for r in sim.requests if r.path.endswith("/EntityDefinitions")]
    assert len(definitions) == 1
    assert definitions[0].query["$filter"] == "EntitySetName eq 'annotations'"


async def test_a_table_the_organisation_lacks_has_no_columns(make_source: MakeSource) -> None:
    assert await make_source().table_columns(fetch("/hubs/crm/cr123_projects").resource) is None


_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)


@given(names=st.frozensets(_NAMES, max_size=8), column=_NAMES)
def test_a_lookup_value_column_is_known_exactly_when_its_attribute_is(
    names: frozenset[str], column: str
) -> None:
    columns = TableColumns("things", names)
    assert columns.has(column) == (column in names)
    assert columns.has(f"_{column}_value") == (column in names or f"_{column}_value" in names)
