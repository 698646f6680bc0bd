"""The row-state topic end to end: changed columns, saves without changes, and resynchronisation."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.polling._support import HOUR_AGO, create, events, insert, only, polls

_AN_HOUR_AGO = {"createdon": HOUR_AGO, "modifiedon": HOUR_AGO}


def _count(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name, {"resource": "accounts"}) or 0.0


async def test_updates_name_their_changed_columns_and_a_save_without_changes_publishes_nothing(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    row = insert(simulator, "accounts", _AN_HOUR_AGO)
    body = only(seed_instance("2016", simulator), "accounts", previousValues=True)
    await create(api, body)
    await wait_for(lambda: polls(registry, "accounts") >= 1)  # the baseline: states stored, no event
    before = simulator.state.table("accounts").rows[row]["description"]

    simulator.state.update("accounts", row, {"description": "one column"})
    await events(settings, "accounts", expect=1)
    simulator.state.update("accounts", row, {"description": "two columns", "name": "Renamed Ltd"})
    await events(settings, "accounts", expect=2)
    simulator.state.update("accounts", row, {})  # a save without changes: only modifiedon moves
    await wait_for(lambda: _count(registry, "gateway_unchanged_rows_total") >= 1)
    simulator.state.update("accounts", row, {"description": "after the no-op"})

    got = await events(settings, "accounts", expect=3)
    assert [e["data"]["eventType"] for e in got] == ["UPDATED"] * 3
    assert [e["data"]["changedAttributes"] for e in got] == [
        ["description"],
        ["description", "name"],
        ["description"],
    ]
    assert got[0]["data"]["previous"] == {"description": before}
    assert got[1]["data"]["previous"] == {
        "description": "one column",
        "name": got[0]["data"]["raw"]["attributes"]["name"],
    }
    assert got[2]["data"]["previous"] == {"description": "two columns"}
    assert all("resync" not in e for e in got)


async def test_a_refused_change_token_resyncs_publishing_only_what_differs(
    settings: Settings, simulator: Simulator, api: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    kept = insert(simulator, "accounts", _AN_HOUR_AGO)
    changed = insert(simulator, "accounts", _AN_HOUR_AGO)
    doomed = insert(simulator, "accounts", _AN_HOUR_AGO)
    await create(api, only(seed_instance("2016", simulator), "accounts"))
    await wait_for(lambda: polls(registry, "accounts") >= 1)

    # Every delta token is now too old (Dataverse's 0x80044352), and changes happen meanwhile.
    simulator.change_tracking_expiry = timedelta(0)
    simulator.state.update("accounts", changed, {"description": "changed while the token expired"})
    simulator.state.delete("accounts", doomed)
    born = insert(simulator, "accounts")
    await wait_for(lambda: _count(registry, "gateway_resyncs_total") >= 1)
    simulator.change_tracking_expiry = timedelta(days=7)

    got = await events(settings, "accounts", expect=3)
    assert {(e["data"]["eventType"], e["subject"]) for e in got} == {
        ("UPDATED", changed),
        ("DELETED", doomed),
        ("CREATED", born),
    }
    assert kept not in {e["subject"] for e in got}  # no false event for the row that did not change
    assert all(e["resync"] is True for e in got)
    (update,) = (e for e in got if e["subject"] == changed)
    assert update["data"]["changedAttributes"] == ["description"]
