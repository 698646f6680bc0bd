from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from gateway.sim import ManualClock, Simulator

from ._support import Api, Reply, SimulatorFactory, rows

TRACK = "odata.track-changes, odata.maxpagesize=4"


async def initial_sync(api: Api, entity_set: str = "accounts", **params: str) -> tuple[list[Reply], str]:
    replies = await api.pages(entity_set, prefer=TRACK, params=params)
    return replies, replies[-1].json()["@odata.deltaLink"]


async def test_first_call_returns_every_row_then_a_delta_link(sim: Simulator, api: Api) -> None:
    sim.state.bulk_load("accounts", 10)

    replies, delta_link = await initial_sync(api, **{"$select": "name"})

    assert [len(reply.json()["value"]) for reply in replies] == [4, 4, 2]
    assert all("@odata.deltaLink" not in reply.json() for reply in replies[:-1])
    assert all(
        reply.headers["Preference-Applied"] == "odata.track-changes, odata.maxpagesize=4" for reply in replies
    )
    assert {row["accountid"] for row in rows(replies)} == set(sim.state.tables["accounts"].rows)
    assert replies[0].json()["@odata.context"] == f"{sim.api_url}/$metadata#accounts(name)"
    link = URL(delta_link)
    assert link.path == "/api/data/v9.2/accounts"
    assert link.query["$select"] == "name"
    assert link.query["$deltatoken"] == "10!01/01/2026 00:00:00"  # version!issue time, as Dataverse writes it


async def test_delta_returns_new_and_updated_rows_then_tombstones_paged(
    sim: Simulator, api: Api, clock: ManualClock
) -> None:
    sim.state.bulk_load("accounts", 6)
    _, delta_link = await initial_sync(api)
    keys = list(sim.state.tables["accounts"].rows)
    clock.advance(30)
    created = sim.state.upsert("accounts", {"name": "New customer"})
    sim.state.update("accounts", keys[0], {"name": "Renamed"})
    sim.state.update("accounts", keys[1], {"telephone1": "555-0100"})
    sim.state.delete("accounts", keys[2])
    sim.state.delete("accounts", keys[3])
    passing = sim.state.upsert("accounts", {"name": "Created then deleted"})
    sim.state.delete("accounts", passing["accountid"])

    replies = await api.pages(delta_link, prefer=TRACK)

    assert [len(reply.json()["value"]) for reply in replies] == [4, 2]
    changes = rows(replies)
    assert [row["accountid"] for row in changes[:3]] == [created["accountid"], keys[0], keys[1]]
    assert changes[1]["name"] == "Renamed"
    assert changes[1]["modifiedon"] == "2026-01-01T00:00:30Z"
    tombstone_context = f"{sim.api_url}/$metadata#accounts/$deletedEntity"
    assert changes[3:] == [
        {"@odata.context": tombstone_context, "id": key, "reason": "deleted"}
        for key in (keys[2], keys[3], passing["accountid"])
    ]
    assert replies[0].json()["@odata.context"] == f"{sim.api_url}/$metadata#accounts/$delta"
    next_delta = replies[-1].json()["@odata.deltaLink"]
    assert URL(next_delta).query["$deltatoken"].startswith(f"{sim.state.tables['accounts'].version}!")

    quiet = await api.get(next_delta, prefer="odata.track-changes")
    assert quiet.json()["value"] == []
    assert "@odata.deltaLink" in quiet.json()


async def test_delta_link_works_without_the_prefer_header(sim: Simulator, api: Api) -> None:
    _, delta_link = await initial_sync(api, "contacts")
    created = sim.state.upsert("contacts", {"firstname": "Ada"})

    reply = await api.get(delta_link)

    assert [row["contactid"] for row in reply.json()["value"]] == [created["contactid"]]
    assert "Preference-Applied" not in reply.headers


async def test_changes_during_the_first_sync_reach_the_next_delta(sim: Simulator, api: Api) -> None:
    sim.state.bulk_load("leads", 8)
    first = await api.get("leads", prefer=TRACK)
    unread = list(sim.state.tables["leads"].rows)[-1]
    sim.state.update("leads", unread, {"subject": "Changed while paging"})

    rest = await api.pages(first.json()["@odata.nextLink"], prefer=TRACK)
    delta = await api.get(rest[-1].json()["@odata.deltaLink"], prefer=TRACK)

    assert len(first.json()["value"]) + len(rows(rest)) == 7  # the changed row left the snapshot...
    assert [row["leadid"] for row in delta.json()["value"]] == [unread]  # ...and is the next change


@pytest.mark.parametrize("option", ["$filter", "$orderby", "$top", "$expand"])
async def test_track_changes_rejects_filter_orderby_top_and_expand(api: Api, option: str) -> None:
    value = {"$filter": "name eq 'x'", "$orderby": "name", "$top": "5", "$expand": "primarycontactid"}[option]

    reply = await api.get("accounts", prefer="odata.track-changes", params={option: value})

    assert reply.status == 400
    assert reply.json()["error"] == {
        "code": "0x80060888",
        "message": f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.',
    }


async def test_expired_delta_token_is_refused(sim: Simulator, api: Api, clock: ManualClock) -> None:
    _, delta_link = await initial_sync(api)
    clock.advance(7 * 86_400)
    api = await Api.login(api.http, sim)  # the first token has long expired
    assert (await api.get(delta_link)).status == 200

    clock.advance(1)
    reply = await api.get(delta_link)

    assert reply.status == 400
    assert reply.json()["error"] == {
        "code": "0x80044352",
        "message": "Version stamp associated with the client has expired. Please perform a full sync.",
    }


async def test_expiry_is_configurable(
    make_simulator: SimulatorFactory, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    sim = await make_simulator(expire_change_tracking_days=1)
    api = await Api.login(http, sim)
    _, delta_link = await initial_sync(api)
    clock.advance(86_401)
    api = await Api.login(http, sim)

    assert (await api.get(delta_link)).json()["error"]["code"] == "0x80044352"


@pytest.mark.parametrize("token", ["garbage", "99!01/01/2026 00:00:00", "1!13/45/2026 00:00:00"])
async def test_invalid_delta_tokens_are_refused(api: Api, token: str) -> None:
    reply = await api.get("accounts", params={"$deltatoken": token})

    assert reply.status == 400
    assert reply.json()["error"] == {"code": "0x80060888", "message": "The $deltatoken is not valid."}
