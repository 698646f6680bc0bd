"""`formattedValues`: option sets, money and lookups arrive with their display texts, as Dynamics users
read them, and lookups become readable objects beside the attributes."""

from __future__ import annotations

import pytest

from gateway.sim import Simulator

from ._support import MakeSource, SentRequest, collect, fetch

_ASKED = (
    'odata.include-annotations="OData.Community.Display.V1.FormattedValue,'
    'Microsoft.Dynamics.CRM.lookuplogicalname"'
)


@pytest.mark.parametrize(
    "hub_url", ["/hubs/crm/opportunities?where=fetchChanges='true'", "/hubs/crm/opportunities"]
)
async def test_display_texts_and_lookups_arrive_when_asked_for(
    sim: Simulator, make_source: MakeSource, sent: list[SentRequest], hub_url: str
) -> None:
    account = sim.state.upsert("accounts", {"name": "Contoso Ltd"})
    sim.state.upsert(
        "opportunities", {"_parentaccountid_value": account["accountid"], "estimatedvalue": 1234.5}
    )

    pages = await collect(make_source(), fetch(hub_url, formatted_values=True))

    [record] = [record for page in pages for record in page.records]
    assert _ASKED in sent[-1].headers["Prefer"]
    assert record["lookups"]["parentaccountid"] == {
        "id": account["accountid"],
        "logicalName": "account",
        "name": "Contoso Ltd",
    }
    assert record["formattedValues"]["estimatedvalue"] == "$1,234.50"
    assert record["formattedValues"]["statecode"] == "Active"
    assert not any("@" in column for column in record["attributes"])


async def test_without_the_option_records_carry_the_attributes_only(
    sim: Simulator, make_source: MakeSource, sent: list[SentRequest]
) -> None:
    sim.state.upsert("opportunities")

    [page] = await collect(make_source(), fetch("/hubs/crm/opportunities"))

    assert "include-annotations" not in sent[-1].headers["Prefer"]
    assert set(page.records[0]) == {"id", "attributes", "etag"}
