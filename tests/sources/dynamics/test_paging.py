"""Paging, filters and change tracking against the simulator."""

from __future__ import annotations

from gateway.sim import ManualClock, Simulator

from ._support import MakeSource, SentRequest, collect, fetch


def _api_requests(sent: list[SentRequest]) -> list[SentRequest]:
    return [request for request in sent if "/api/data/" in request.url.path]


async def test_filter_mode_follows_next_links_unchanged_and_resends_prefer(
    sim: Simulator, make_source: MakeSource, sent: list[SentRequest]
) -> None:
    sim.state.bulk_load("contacts", 7)

    pages = await collect(make_source(), fetch("/hubs/crm/contacts", page_size=2))

    assert [len(page.records) for page in pages] == [2, 2, 2, 1]
    assert {r["id"] for page in pages for r in page.records} == set(sim.state.tables["contacts"].rows)
    assert all(page.cursor is None and not page.baseline and not page.deleted_ids for page in pages)
    requests = _api_requests(sent)
    assert [r.headers["Prefer"] for r in requests] == ["odata.maxpagesize=2"] * 4
    assert str(requests[0].url) == f"{sim.api_url}/contacts"
    assert "$filter" not in requests[0].url.query


async def test_seed_filter_reaches_dataverse_as_odata_and_returns_the_matching_rows(
    sim: Simulator, make_source: MakeSource, sent: list[SentRequest]
) -> None:
    old = [sim.state.upsert("accounts", {"modifiedon": "2019-06-01T00:00:00Z"}) for _ in range(2)]
    new = [sim.state.upsert("accounts", {"modifiedon": f"2021-0{n}-01T00:00:00Z"}) for n in range(1, 6)]

    request = fetch("/hubs/crm/accounts?where=modifiedon >'2020-01-01T00:00:00Z'", page_size=2)
    pages = await collect(make_source(), request)

    assert len(pages) == 3
    ids = [record["id"] for page in pages for record in page.records]
    assert sorted(ids) == sorted(row["accountid"] for row in new)
    assert not {row["accountid"] for row in old} & set(ids)
    logged = [r for r in sim.requests if r.path.endswith("/accounts")]
    assert logged[0].query == {"$filter": "modifiedon gt 2020-01-01T00:00:00Z"}
    assert "$filter=modifiedon%20gt%202020-01-01T00:00:00Z" in _api_requests(sent)[0].url.raw_query_string


async def test_change_tracking_baseline_then_changes_and_deletes(
    sim: Simulator, make_source: MakeSource, sent: list[SentRequest]
) -> None:
    rows = [sim.state.upsert("accounts") for _ in range(5)]
    source = make_source()
    request = fetch("/hubs/crm/accounts?where=fetchChanges='true'", page_size=2)

    baseline = await collect(source, request)

    assert [len(page.records) for page in baseline] == [2, 2, 1]
    assert all(page.baseline for page in baseline)
    assert [page.cursor is not None for page in baseline] == [False, False, True]
    assert {r["id"] for page in baseline for r in page.records} == {row["accountid"] for row in rows}
    prefer = "odata.track-changes,odata.maxpagesize=2"
    assert [r.headers["Prefer"] for r in _api_requests(sent)] == [prefer] * 3

    cursor = baseline[-1].cursor
    assert cursor is not None
    created = [sim.state.upsert("accounts") for _ in range(2)]
    sim.state.update("accounts", rows[0]["accountid"], {"name": "Renamed Ltd"})
    sim.state.delete("accounts", rows[1]["accountid"])
    sim.state.delete("accounts", rows[2]["accountid"])
    sent.clear()

    delta = await collect(source, fetch(request.url, cursor=cursor, page_size=2))

    assert not any(page.baseline for page in delta)
    changed = {r["id"]: r for page in delta for r in page.records}
    assert set(changed) == {rows[0]["accountid"], *(row["accountid"] for row in created)}
    assert changed[rows[0]["accountid"]]["attributes"]["name"] == "Renamed Ltd"
    assert [i for page in delta for i in page.deleted_ids] == [rows[1]["accountid"], rows[2]["accountid"]]
    assert len(delta) == 3  # 3 changed rows and 2 tombstones, 2 to a page
    assert str(_api_requests(sent)[0].url) == cursor  # the delta link, unchanged
    assert [r.headers["Prefer"] for r in _api_requests(sent)] == [prefer] * 3
    next_cursor = delta[-1].cursor
    assert next_cursor is not None
    assert next_cursor != cursor

    quiet = await collect(source, fetch(request.url, cursor=next_cursor))
    assert [(page.records, page.deleted_ids) for page in quiet] == [([], [])]
    assert quiet[0].cursor is not None


async def test_records_are_normalised(sim: Simulator, make_source: MakeSource) -> None:
    row = sim.state.upsert(
        "accounts",
        {"createdon": "2026-01-02T03:04:05Z", "modifiedon": "2026-01-02T03:04:06Z", "name": "Contoso"},
    )

    [page] = await collect(make_source(), fetch("/hubs/crm/accounts"))

    [record] = page.records
    assert record["id"] == row["accountid"]
    assert record["etag"] == row["@odata.etag"]
    attributes = record["attributes"]
    assert attributes["createdon"] == 1767323045000
    assert attributes["modifiedon"] == 1767323046000
    assert attributes["name"] == "Contoso"
    assert attributes["accountid"] == row["accountid"]
    assert not any(key.startswith("@") for key in attributes)


async def test_expired_cursor_is_replaced_by_a_new_baseline(
    sim: Simulator, clock: ManualClock, make_source: MakeSource
) -> None:
    rows = [sim.state.upsert("accounts") for _ in range(3)]
    source = make_source()
    request = fetch("/hubs/crm/accounts?where=fetchChanges='true'", page_size=2)
    cursor = (await collect(source, request))[-1].cursor
    clock.advance(8 * 86_400)  # past Dataverse's default retention of 7 days

    pages = await collect(source, fetch(request.url, cursor=cursor, page_size=2))

    assert [r.status for r in sim.requests if r.path.endswith("/accounts")][-3:] == [400, 200, 200]
    assert [page.baseline for page in pages] == [True, True]
    assert {r["id"] for page in pages for r in page.records} == {row["accountid"] for row in rows}
    assert pages[-1].cursor not in (None, cursor)
