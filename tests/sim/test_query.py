from __future__ import annotations

from yarl import URL

from gateway.sim import ManualClock, Simulator

from ._support import Api, rows


async def test_pages_follow_next_links_unchanged(sim: Simulator, api: Api) -> None:
    sim.state.bulk_load("accounts", 23)

    replies = await api.pages("accounts", prefer="odata.maxpagesize=10")

    assert [len(reply.json()["value"]) for reply in replies] == [10, 10, 3]
    for reply in replies:
        assert reply.headers["Preference-Applied"] == "odata.maxpagesize=10"
        assert reply.headers["OData-Version"] == "4.0"
        assert reply.json()["@odata.context"] == f"{sim.api_url}/$metadata#accounts"
    next_link = URL(replies[0].json()["@odata.nextLink"])
    assert next_link.origin() == URL(sim.base_url)
    assert next_link.path == "/api/data/v9.2/accounts"
    assert set(next_link.query) == {"$skiptoken"}
    found = rows(replies)
    table = sim.state.tables["accounts"]
    assert [row["accountid"] for row in found] == [key for _, key in table.order]
    assert found == [table.rows[row["accountid"]] for row in found]
    assert all(row["@odata.etag"] == f'W/"{row["versionnumber"]}"' for row in found)


async def test_paging_keeps_query_options_and_misses_no_row_changed_midway(
    sim: Simulator, api: Api, clock: ManualClock
) -> None:
    sim.state.bulk_load("contacts", 30)
    first = await api.get("contacts", prefer="odata.maxpagesize=10", params={"$select": "fullname"})
    next_link = first.json()["@odata.nextLink"]
    assert URL(next_link).query["$select"] == "fullname"
    seen = {row["contactid"] for row in first.json()["value"]}
    read, unread = min(seen), next(key for _, key in sim.state.tables["contacts"].order if key not in seen)
    clock.advance(60)  # a row already read moves to the end, and one not read yet
    sim.state.update("contacts", read, {"jobtitle": "CEO"})
    sim.state.update("contacts", unread, {"jobtitle": "CFO"})

    rest = await api.pages(next_link, prefer="odata.maxpagesize=10")

    later = [row["contactid"] for row in rows(rest)]
    assert seen | set(later) == set(sim.state.tables["contacts"].rows)
    assert len(later) == 21  # the 20 not read yet, and the one that moved past the cursor
    assert later[-2:] == sorted([read, unread])


async def test_select_returns_the_columns_etag_and_key(sim: Simulator, api: Api) -> None:
    created = sim.state.upsert("leads", {"subject": "Big deal", "estimatedvalue": 10.0})

    reply = await api.get("leads", params={"$select": "subject,estimatedvalue"})

    assert reply.json()["@odata.context"] == f"{sim.api_url}/$metadata#leads(subject,estimatedvalue)"
    assert reply.json()["value"] == [
        {
            "@odata.etag": created["@odata.etag"],
            "subject": "Big deal",
            "estimatedvalue": 10.0,
            "leadid": created["leadid"],
        }
    ]
    assert "Preference-Applied" not in reply.headers


async def test_filter_on_dates_strings_and_numbers(sim: Simulator, api: Api, clock: ManualClock) -> None:
    for index, (name, revenue) in enumerate(
        [("Alpha", 10.0), ("beta", 20.0), ("Gamma's", 30.0), ("delta", None)]
    ):
        row = sim.state.upsert("accounts", {"name": name, "revenue": revenue})
        assert row["modifiedon"] == f"2026-01-01T00:0{index}:00Z"
        clock.advance(60)

    async def matching(text: str) -> list[str]:
        reply = await api.get("accounts", params={"$filter": text, "$select": "name"})
        assert reply.status == 200, reply.body
        return [row["name"] for row in reply.json()["value"]]

    assert await matching("modifiedon gt 2026-01-01T00:01:00Z") == ["Gamma's", "delta"]
    assert await matching("modifiedon ge 2026-01-01T00:01:00Z and modifiedon lt 2026-01-01T00:03:00Z") == [
        "beta",
        "Gamma's",
    ]
    assert await matching("name eq 'gamma''s' or name eq 'ALPHA'") == ["Alpha", "Gamma's"]
    assert await matching("revenue ge 20 and (name eq 'beta' or revenue gt 25)") == ["beta", "Gamma's"]
    assert await matching("revenue eq null") == ["delta"]
    assert await matching("not (revenue lt 15) and revenue ne null") == ["beta", "Gamma's"]


async def test_bad_options_answer_400_with_dataverse_error_body(api: Api) -> None:
    cases = {
        "$filter": ("name eq", "Syntax error at position 7 in 'name eq'."),
        "$select": (
            "name,colour",
            "Could not find a property named 'colour' on type 'Microsoft.Dynamics.CRM.account'.",
        ),
        "$top": ("-1", "Invalid value '-1' for $top query option found."),
        "$skiptoken": ("not-a-token", "The $skiptoken is not valid."),
        "$skip": ("10", "The query parameter $skip is not supported."),
    }
    for option, (value, message) in cases.items():
        reply = await api.get("accounts", params={option: value})
        assert reply.status == 400
        assert reply.headers["Content-Type"].startswith("application/json")
        error = reply.json()["error"]
        assert error["code"] == "0x80060888"
        assert error["message"].startswith(message)


async def test_unknown_entity_set_answers_404(api: Api) -> None:
    reply = await api.get("widgets")

    assert reply.status == 404
    assert reply.json() == {
        "error": {"code": "0x80060888", "message": "Resource not found for the segment 'widgets'."}
    }


async def test_orderby_one_column_either_way_and_pages(sim: Simulator, api: Api) -> None:
    for employees in (5, None, 3, 9, 3):
        sim.state.upsert("accounts", {"numberofemployees": employees})

    async def order(direction: str) -> list[int | None]:
        replies = await api.pages(
            "accounts", prefer="odata.maxpagesize=2", params={"$orderby": f"numberofemployees {direction}"}
        )
        assert len(replies) == 3
        return [row["numberofemployees"] for row in rows(replies)]

    assert await order("asc") == [None, 3, 3, 5, 9]
    assert await order("desc") == [9, 5, 3, 3, None]


async def test_top_caps_one_page_unless_a_page_size_is_preferred(sim: Simulator, api: Api) -> None:
    sim.state.bulk_load("tasks", 12)

    alone = await api.get("tasks", params={"$top": "5"})
    with_size = await api.pages("tasks", prefer="odata.maxpagesize=5", params={"$top": "3"})

    assert len(alone.json()["value"]) == 5
    assert "@odata.nextLink" not in alone.json()
    assert [len(reply.json()["value"]) for reply in with_size] == [5, 5, 2]  # Dataverse ignores $top then


async def test_page_size_is_capped_at_5000(sim: Simulator, api: Api) -> None:
    sim.state.bulk_load("annotations", 5001)

    replies = await api.pages("annotations", prefer="odata.maxpagesize=9000")

    assert [len(reply.json()["value"]) for reply in replies] == [5000, 1]
    assert replies[0].headers["Preference-Applied"] == "odata.maxpagesize=5000"
    default = await api.get("annotations")
    assert len(default.json()["value"]) == 5000
    assert "@odata.nextLink" in default.json()


async def test_annotations_are_added_to_copies_when_the_prefer_header_asks(sim: Simulator, api: Api) -> None:
    account = sim.state.upsert("accounts", {"name": "Fabrikam", "statecode": 1, "donotemail": True})
    prefer = 'odata.maxpagesize=10, odata.include-annotations="*"'

    [reply] = await api.pages("accounts", prefer=prefer)

    [row] = rows([reply])
    assert reply.headers["Preference-Applied"] == 'odata.maxpagesize=10, odata.include-annotations="*"'
    assert row["statecode@OData.Community.Display.V1.FormattedValue"] == "Inactive"
    assert row["donotemail@OData.Community.Display.V1.FormattedValue"] == "Yes"
    assert row["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"
    stored = sim.state.tables["accounts"].rows[account["accountid"]]
    assert [column for column in stored if "@" in column] == ["@odata.etag"]
