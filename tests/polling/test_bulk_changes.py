"""A bulk import: 100,000 rows sharing one `modifiedon` second, or spread over the overlap window, in
filter mode and in change-tracking mode, with the gateway killed by SIGKILL in the middle of a poll.
A read_committed consumer sees each row once (issue 14: in filter mode the seen-set of such a window
made a checkpoint record Kafka refused, and nothing was ever published).

Each test runs real `event-gateway run` processes; the simulator runs in the test process.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.kafka.compacted import read_table
from gateway.polling.stored import PART_BYTES, load_checkpoints
from gateway.sim import DEMO_USERS, Simulator
from tests.conftest import wait_for
from tests.polling._processes import (
    ACCOUNTS_URL,
    GatewayProcess,
    LiveChanges,
    accounts_instance,
    end_offsets,
    gateway_env,
    parse_time,
    read_committed_to_end,
    running,
)

ROWS = 100_000
LATE_ROWS = 1000  # committed late with the timestamp the watermark sits on, after the bulk
PAGE_SIZE = 5000  # Dataverse's largest page
OVERLAP_SECONDS = 30
SPREAD_SECONDS = 20  # "spread over the overlap": rows modified over the last 20 s of a 30 s overlap
TOPIC_PARTITIONS = 3
_FILTER_URL = "/hubs/crm/accounts?where=modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'"
_USER, _PASSWORD = next(iter(DEMO_USERS.items()))


def _body(sim: Simulator, *, filtered: bool) -> dict[str, Any]:
    body = accounts_instance(
        sim, user=_USER, password=_PASSWORD, page_size=PAGE_SIZE, refresh_minutes=1 / 60, name="bulk"
    )
    if filtered:
        body["configuration"]["event.poller.configuration"]["accounts"]["url"] = _FILTER_URL
    return body


def _pages(sim: Simulator, *, first: bool) -> int:
    """Answered accounts requests: the first pages of polls, or the pages after them."""
    return sum(
        1
        for r in list(sim.requests)
        if r.path == ACCOUNTS_URL and r.status == 200 and ("$skiptoken" in r.query) is not first
    )


def _rows(sim: Simulator) -> set[tuple[str, datetime]]:
    return {(key, parse_time(row["modifiedon"])) for key, row in sim.state.tables["accounts"].rows.items()}


async def _stable_offsets(bootstrap: str, topic: str) -> int:
    """The sum of the last stable offsets: 0 while the first transaction is open, aborted or not."""
    return sum((await end_offsets(bootstrap, topic, TOPIC_PARTITIONS, isolation="read_committed")).values())


async def _published(gateway: GatewayProcess, at_least: int) -> bool:
    return await gateway.metric("gateway_events_published_total", object_type="accounts") >= at_least


async def _polled(gateway: GatewayProcess, at_least: float) -> bool:
    return await gateway.polls("ok") >= at_least


async def _kill_mid_poll(gateway: GatewayProcess, sim: Simulator) -> None:
    """SIGKILL once a poll that began now has answered a few of its pages, long before its last."""
    polls, pages = _pages(sim, first=True), _pages(sim, first=False)
    await wait_for(lambda: _pages(sim, first=True) > polls, within=120)
    await wait_for(lambda: _pages(sim, first=False) >= pages + 3, within=60)
    await gateway.kill()


async def _bulk_change_once_through_sigkills(
    bootstrap: str, unique: str, logs: Path, *, filtered: bool, within_seconds: int, seed: int
) -> None:
    async with Simulator(users=DEMO_USERS, seed=seed) as sim:
        env = gateway_env(
            bootstrap,
            f"bulk-{unique}",
            topic_partitions=str(TOPIC_PARTITIONS),
            poll_overlap_seconds=str(OVERLAP_SECONDS),
        )
        topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        async with running(GatewayProcess(env, logs / "first.log")) as (first,):
            await first.create_instance(_body(sim, filtered=filtered))
            # The baseline poll commits where the source stands: the delta link, or the start of the window.
            await wait_for(lambda: _polled(first, 1), within=30)
            sim.state.bulk_load("accounts", ROWS, within_seconds=within_seconds)
            made = _rows(sim)
            await _kill_mid_poll(first, sim)
        assert await _stable_offsets(bootstrap, topic) == 0, "the bulk poll finished before the kill"

        async with running(GatewayProcess(env, logs / "second.log")) as (second,):
            await wait_for(lambda: _published(second, ROWS), within=180)
            if filtered:
                # Every later poll reads the whole window again and must skip what the seen-set holds.
                newest = max(modified for _, modified in made)
                stamp = {"createdon": newest, "modifiedon": newest}
                late = {sim.state.upsert("accounts", stamp)["accountid"] for _ in range(LATE_ROWS)}
                made |= {(key, modified) for key, modified in _rows(sim) if key in late}
                await _kill_mid_poll(second, sim)
            else:
                polled = await second.polls("ok") + 2  # a delta link that finds nothing new, twice
                await wait_for(lambda: _polled(second, polled), within=60)

        if filtered:
            table = await read_table(bootstrap, f"{env['GATEWAY_STATE_TOPIC_PREFIX']}.checkpoints", [0, 1])
            assert max(len(value) for value in table.values()) <= PART_BYTES
            (checkpoint,) = load_checkpoints(table).values()
            assert len(checkpoint.seen) >= ROWS, "the window's seen-set is not what the restart reads"
            assert len(table) >= 15
            async with running(GatewayProcess(env, logs / "third.log")) as (third,):
                # Two whole polls of the window after the restart, from the checkpoint of 100,000 pairs.
                await wait_for(lambda: _polled(third, 2), within=180)
        events = await read_committed_to_end(bootstrap, topic, TOPIC_PARTITIONS, within=60)

    assert LiveChanges(sim, [], [], made=made).discrepancies(events) == {}
    assert len(events) == len(made) == ROWS + (LATE_ROWS if filtered else 0)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("filtered", [True, False], ids=["filter", "change-tracking"])
async def test_100000_rows_sharing_one_modifiedon_second_arrive_once_across_sigkills(
    kafka_bootstrap: str, unique: str, tmp_path: Path, filtered: bool
) -> None:
    await _bulk_change_once_through_sigkills(
        kafka_bootstrap, unique, tmp_path, filtered=filtered, within_seconds=0, seed=53
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("filtered", [True, False], ids=["filter", "change-tracking"])
async def test_100000_rows_spread_over_the_overlap_arrive_once_across_sigkills(
    kafka_bootstrap: str, unique: str, tmp_path: Path, filtered: bool
) -> None:
    await _bulk_change_once_through_sigkills(
        kafka_bootstrap, unique, tmp_path, filtered=filtered, within_seconds=SPREAD_SECONDS, seed=59
    )
