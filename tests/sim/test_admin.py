from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from gateway.sim import ManualClock, Simulator

from ._support import CLIENT, Api, SimulatorFactory, until


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, *, status: int = 200
) -> Any:
    async with http.request(method, url, json=body) as response:
        assert response.status == status, await response.text()
        return None if status == 204 else await response.json()


async def test_records_are_created_upserted_patched_and_deleted(
    sim: Simulator, api: Api, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    records = f"{sim.base_url}/_sim/tables/contacts/records"
    (_,) = (await call(http, "POST", records, {"firstname": "Ada", "lastname": "Lovelace"}))["value"]
    delta_link = (await api.get("contacts", prefer="odata.track-changes")).json()["@odata.deltaLink"]
    clock.advance(5)

    late, second = (await call(http, "POST", records, [
        {"firstname": "Late", "createdon": "2025-12-31T23:00:00Z", "modifiedon": "2025-12-31T23:30:00+00:00"},
        {"firstname": "Grace"},
    ]))["value"]  # fmt: skip
    upserted = (await call(http, "POST", records, {"contactid": second["contactid"], "lastname": "Hopper"}))[
        "value"
    ]
    patched = await call(http, "PATCH", f"{records}/{late['contactid']}", {"jobtitle": "CFO"})
    await call(http, "DELETE", f"{records}/{second['contactid']}", status=204)

    assert late["modifiedon"] == "2025-12-31T23:30:00Z"  # a late commit: stamped in the past, visible now
    assert upserted[0]["firstname"] == "Grace"
    assert upserted[0]["lastname"] == "Hopper"
    assert patched["jobtitle"] == "CFO"
    assert sim.state.get("contacts", late["contactid"]) == patched
    assert sim.state.get("contacts", second["contactid"]) is None
    assert patched["modifiedon"] == "2026-01-01T00:00:05Z"
    changes = (await api.get(delta_link)).json()["value"]
    assert [change.get("contactid", change.get("id")) for change in changes] == [
        late["contactid"],
        second["contactid"],
    ]
    assert changes[1]["reason"] == "deleted"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "tables/contacts/records", {"colour": "red"}, 400, "0x80060888"),
        ("POST", "tables/contacts/records", {"versionnumber": 5}, 400, "0x80040203"),
        ("POST", "tables/contacts/records", {"createdon": "yesterday"}, 400, "0x80040203"),
        ("POST", "tables/contacts/records", {"donotemail": "no"}, 400, "0x80040203"),
        ("POST", "tables/contacts/records", [1, 2], 400, "0x80040203"),
        ("POST", "tables/widgets/records", {}, 404, "0x80060888"),
        ("PATCH", "tables/contacts/records/6f0c5a52-1d3b-4e6e-8a7c-2b9d0e1f2a3b", {}, 404, "0x80040217"),
        ("DELETE", "tables/contacts/records/6f0c5a52-1d3b-4e6e-8a7c-2b9d0e1f2a3b", None, 404, "0x80040217"),
        ("POST", "tables/contacts/bulk", {"count": 0}, 400, "0x80040203"),
        ("POST", "tables/contacts/bulk", {"count": 1, "withinSeconds": -1}, 400, "0x80040203"),
        ("POST", "tables/contacts/bulk", {"count": 1, "withinSeconds": "5"}, 400, "0x80040203"),
        ("POST", "generator", {"rate": -1}, 400, "0x80040203"),
        ("POST", "generator", {"rate": 1, "tables": ["widgets"]}, 404, "0x80060888"),
    ],
)
async def test_bad_admin_requests_are_refused(
    sim: Simulator, http: aiohttp.ClientSession, method: str, path: str, body: Any, status: int, code: str
) -> None:
    answer = await call(http, method, f"{sim.base_url}/_sim/{path}", body, status=status)

    assert answer["error"]["code"] == code


async def test_invalid_json_is_refused(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/_sim/tables/leads/records", data=b"{not json") as response:
        assert response.status == 400


async def test_bulk_load_of_twenty_thousand_rows(
    sim: Simulator, api: Api, http: aiohttp.ClientSession
) -> None:
    started = time.perf_counter()
    loaded = await call(http, "POST", f"{sim.base_url}/_sim/tables/accounts/bulk", {"count": 20_000})
    elapsed = time.perf_counter() - started

    assert loaded == {"count": 20_000, "version": 20_000}
    assert elapsed < 5  # about 0.15 s; 200,000 rows take about 1.5 s
    tables = await call(http, "GET", f"{sim.base_url}/_sim/tables")
    assert tables["accounts"] == {"count": 20_000, "version": 20_000, "tombstones": 0}
    page = await api.get("accounts", prefer="odata.maxpagesize=5000")
    assert 900 < len(page.body) / 5000 < 1500  # about 1 KB of JSON per row
    rows = page.json()["value"]
    assert len({row["accountid"] for row in rows}) == 5000
    assert all(row["createdon"] <= row["modifiedon"] <= "2026-01-01T00:00:00Z" for row in rows)


async def test_generator_produces_changes_until_stopped(
    sim: Simulator, api: Api, http: aiohttp.ClientSession
) -> None:
    sim.state.bulk_load("accounts", 50)
    delta_link = (await api.get("accounts", prefer="odata.track-changes")).json()["@odata.deltaLink"]
    generator = f"{sim.base_url}/_sim/generator"

    started = await call(http, "POST", generator, {"rate": 500, "tables": ["accounts"], "delete": 0.2})
    async with asyncio.timeout(5):
        await until(lambda: sim.generator.changes >= 50)
    stopped = await call(http, "DELETE", generator)

    assert started["running"] is True
    assert started["settings"]["tables"] == ["accounts"]
    assert stopped["running"] is False
    assert stopped["changes"] >= 50
    table = sim.state.tables["accounts"]
    assert table.version == 50 + stopped["changes"]
    assert table.tombstones
    changes = (await api.get(delta_link)).json()["value"]
    assert any("reason" in change for change in changes)
    assert any("accountid" in change for change in changes)


async def test_request_log_records_and_clears(
    make_simulator: SimulatorFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_simulator(request_log_size=3)
    api = await Api.login(http, sim)
    await api.get("accounts", params={"$select": "name", "$filter": "name eq 'x'"}, user_agent="probe/1")
    await api.get("contacts")
    await api.get("nothing")

    log = (await call(http, "GET", f"{sim.base_url}/_sim/requests"))["value"]

    assert [entry["path"] for entry in log] == [
        "/api/data/v9.2/accounts",
        "/api/data/v9.2/contacts",
        "/api/data/v9.2/nothing",
    ]  # the token request fell out of the bounded log; admin calls are never logged
    assert log[0] == {
        "time": "2026-01-01T00:00:00Z",
        "method": "GET",
        "path": "/api/data/v9.2/accounts",
        "query": {"$select": "name", "$filter": "name eq 'x'"},
        "principal": CLIENT,
        "status": 200,
        "user_agent": "probe/1",
    }
    assert log[2]["status"] == 404
    await call(http, "DELETE", f"{sim.base_url}/_sim/requests", status=204)
    assert (await call(http, "GET", f"{sim.base_url}/_sim/requests"))["value"] == []


async def test_a_bulk_load_within_some_seconds_stamps_every_row_there(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A bulk import: every row created and modified in the last `within_seconds`, the bound included."""
    body = {"count": 3, "withinSeconds": 0}
    assert await call(http, "POST", f"{sim.base_url}/_sim/tables/leads/bulk", body) == {
        "count": 3,
        "version": 3,
    }
    assert {row["modifiedon"] for row in sim.state.tables["leads"].rows.values()} == {"2026-01-01T00:00:00Z"}
    sim.state.bulk_load("accounts", 2000, within_seconds=4)
    sim.state.bulk_load("contacts", 50, within_seconds=0)
    accounts = sim.state.tables["accounts"].rows.values()
    assert {row["modifiedon"] for row in accounts} == {
        f"2025-12-31T23:59:{second}Z" for second in (56, 57, 58, 59)
    } | {"2026-01-01T00:00:00Z"}
    assert all(row["createdon"] == row["modifiedon"] for row in accounts)
    assert {row["modifiedon"] for row in sim.state.tables["contacts"].rows.values()} == {
        "2026-01-01T00:00:00Z"
    }
    with pytest.raises(ValueError, match="within -1 seconds"):
        sim.state.bulk_load("accounts", 1, within_seconds=-1)
