"""Crash and restart: the gateway killed with SIGKILL in the middle of a poll, the broker restarted
during polling, and the gateway's transactional producer fenced. Each time a read_committed consumer
sees each change exactly once.

The gateway runs as a real `event-gateway run` process configured by GATEWAY_* variables; the
simulator runs in the test process, and the tests read the log of requests it answered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from gateway.kafka.compacted import read_table
from gateway.polling.row_state import Shapes, columns_of, decode_state, ignored_columns, parse_row_key
from gateway.sim import DEMO_USERS, Simulator
from tests.conftest import ROOT, wait_for
from tests.polling._processes import (
    ACCOUNTS_URL,
    GatewayProcess,
    LiveChanges,
    accounts_instance,
    end_offsets,
    gateway_env,
    read_committed_to_end,
    running,
)

TOPIC_PARTITIONS = 3
_LOCAL_BROKERS = ("localhost:9092", "127.0.0.1:9092")
_KAFKA_SH = ROOT / ".ci" / "kafka.sh"
_BROKER_PIDFILE = ROOT / ".cache" / "kafka" / "broker.pid"
_USER, _PASSWORD = next(iter(DEMO_USERS.items()))


def _gateway_env(bootstrap: str, unique: str) -> dict[str, str]:
    return gateway_env(bootstrap, f"crash-{unique}", topic_partitions=str(TOPIC_PARTITIONS))


def _accounts_instance(
    sim: Simulator, *, page_size: int, snapshot: bool, refresh_minutes: float
) -> dict[str, Any]:
    return accounts_instance(
        sim,
        user=_USER,
        password=_PASSWORD,
        page_size=page_size,
        snapshot=snapshot,
        refresh_minutes=refresh_minutes,
        name="crash",
    )


async def _end_offsets(bootstrap: str, topic: str, *, isolation: str) -> dict[int, int]:
    return await end_offsets(bootstrap, topic, TOPIC_PARTITIONS, isolation=isolation)


async def _read_committed_to_end(bootstrap: str, topic: str, *, within: float) -> list[dict[str, Any]]:
    return await read_committed_to_end(bootstrap, topic, TOPIC_PARTITIONS, within=within)


def _page_requests(sim: Simulator) -> int:
    """Answered requests for a page after the first of an accounts query."""
    return sum(
        1
        for record in list(sim.requests)
        if record.path == ACCOUNTS_URL and "$skiptoken" in record.query and record.status == 200
    )


async def test_sigkill_during_a_50000_record_poll_then_restart_publishes_each_record_once(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Change tracking with `snapshot` makes the first poll emit every existing row: 50 pages of 1000
    rows in one transaction. (A filter-mode poll would emit only rows modified after the instance
    started, so the rows would have to be rewritten first; the snapshot needs nothing more.)"""
    records = 50_000
    async with Simulator(users=DEMO_USERS, seed=31) as sim:
        sim.state.bulk_load("accounts", records)
        ids = set(sim.state.tables["accounts"].rows)
        env = _gateway_env(kafka_bootstrap, unique)
        topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        body = _accounts_instance(sim, page_size=1000, snapshot=True, refresh_minutes=1 / 60)

        async with running(GatewayProcess(env, tmp_path / "first.log")) as (first,):
            await first.create_instance(body)
            await wait_for(lambda: _page_requests(sim) >= 10, within=60)
            await first.kill()
        pages_before_kill = _page_requests(sim)
        assert pages_before_kill < records // 1000 - 1, "the first poll finished before the kill"
        # The killed poll had written into its transaction, and none of it is committed.
        written = await _end_offsets(kafka_bootstrap, topic, isolation="read_uncommitted")
        stable = await _end_offsets(kafka_bootstrap, topic, isolation="read_committed")
        assert sum(written.values()) > 0
        assert sum(stable.values()) == 0

        async with running(GatewayProcess(env, tmp_path / "second.log")) as (second,):
            # The restarted gateway resumes the stored instance from scratch (no checkpoint was
            # committed), commits the whole snapshot, then polls once more with the delta link.
            async def snapshot_committed_and_polled_again() -> bool:
                return await second.polls("ok") >= 2

            await wait_for(snapshot_committed_and_polled_again, within=90)
            events = await _read_committed_to_end(kafka_bootstrap, topic, within=60)

        assert len(events) == records
        assert len({e["id"] for e in events}) == records
        assert {e["subject"] for e in events} == ids
        assert all(e.get("snapshot") is True for e in events)
        # The killed poll's row states were in its transaction too: had any been visible, the restart
        # would have taken its snapshot for a resync and published fewer rows. One state per row.
        states = await read_table(
            kafka_bootstrap,
            f"{env['GATEWAY_STATE_TOPIC_PREFIX']}.row-state",
            range(int(env["GATEWAY_STATE_PARTITIONS"])),
        )
        assert {parse_row_key(key)[2] for key in states} == ids
        # The aborted attempt stays in the log, invisible: the log holds more than the committed events.
        total = await _end_offsets(kafka_bootstrap, topic, isolation="read_uncommitted")
        assert sum(total.values()) > records


async def test_sigkill_between_polls_leaves_each_row_state_whole_and_in_use(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Killed after the poll that published an update: the restarted gateway reads the row's state
    back (read_committed), so the next update names just its own column and a save without changes
    publishes nothing; every state record still decodes, one per row, equal to what was published."""
    async with Simulator(users=DEMO_USERS, seed=37) as sim:
        sim.state.bulk_load("accounts", 20)
        row = sorted(sim.state.tables["accounts"].rows)[0]
        env = _gateway_env(kafka_bootstrap, unique)
        topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        body = _accounts_instance(sim, page_size=50, snapshot=False, refresh_minutes=1 / 60)

        async def published(at_least: int) -> bool:
            # Counted as read: each committed transaction also takes an offset for its marker.
            return len(await _read_committed_to_end(kafka_bootstrap, topic, within=10)) >= at_least

        async with running(GatewayProcess(env, tmp_path / "first.log")) as (first,):
            await first.create_instance(body)
            await wait_for(lambda: _polled(first, 1), within=30)
            sim.state.update("accounts", row, {"description": "before the kill"})
            await wait_for(lambda: published(1), within=30)
            # One more poll: the kill lands after the update's transaction, between polls.
            after = await first.polls("ok") + 1
            await wait_for(lambda: _polled(first, after), within=30)
            await first.kill()

        async with running(GatewayProcess(env, tmp_path / "second.log")) as (second,):
            await wait_for(lambda: _polled(second, 1), within=30)
            sim.state.update("accounts", row, {"name": "Renamed after the kill"})
            await wait_for(lambda: published(2), within=30)
            sim.state.update("accounts", row, {})  # a save without changes: only modifiedon moves
            unchanged = "gateway_unchanged_rows_total"
            await wait_for(lambda: _metric_at_least(second, unchanged, 1), within=30)
            sim.state.update("accounts", row, {"description": "last"})
            await wait_for(lambda: published(3), within=30)
            events = await _read_committed_to_end(kafka_bootstrap, topic, within=30)

        states = await read_table(
            kafka_bootstrap,
            f"{env['GATEWAY_STATE_TOPIC_PREFIX']}.row-state",
            range(int(env["GATEWAY_STATE_PARTITIONS"])),
        )

    assert [e["subject"] for e in events] == [row] * 3
    # The baseline stored every row's state; after the kill, the states stored before it tell
    # exactly which columns changed.
    assert [e["data"].get("changedAttributes") for e in events] == [
        ["description"],
        ["name"],
        ["description"],
    ]
    rows = {parse_row_key(key)[2]: value for key, value in states.items()}
    assert len(rows) == len(states)
    for row_id, value in rows.items():
        decode_state(value, row_id=row_id)
    published = Shapes(ignored_columns("attributes.modifiedon")).state_of(
        columns_of(events[-1]["data"]["raw"]), keep_values=False
    )
    assert decode_state(rows[row], row_id=row).digest_map() == published.digest_map()


async def _polled(gateway: GatewayProcess, at_least: float) -> bool:
    return await gateway.polls("ok") >= at_least


async def _metric_at_least(gateway: GatewayProcess, name: str, value: float) -> bool:
    return await gateway.metric(name, resource="accounts") >= value


def _local_broker_pid(bootstrap: str) -> int | None:
    """The pid of the broker `.ci/kafka.sh up` started for this checkout, when that is the one in use."""
    if bootstrap not in _LOCAL_BROKERS:
        return None
    try:
        pid = int(_BROKER_PIDFILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


async def _kafka_sh(command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(_KAFKA_SH),
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, f"kafka.sh {command} failed:\n{output.decode(errors='replace')}"


Disruption = Callable[[GatewayProcess, LiveChanges], Awaitable[None]]


async def _each_change_once_through(
    disrupt: Disruption, *, bootstrap: str, unique: str, log: Path, seed: int
) -> float:
    """Poll a live source by change tracking, `disrupt` the gateway while it runs, and check that a
    read_committed consumer sees each change once. Returns the number of failed polls."""
    async with Simulator(users=DEMO_USERS, seed=seed) as sim:
        changes = LiveChanges.on_existing(sim, 2000)
        env = _gateway_env(bootstrap, unique)
        topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        body = _accounts_instance(sim, page_size=50, snapshot=False, refresh_minutes=1 / 60)
        async with running(GatewayProcess(env, log)) as (gateway,):

            async def polled(at_least: float) -> bool:
                return await gateway.polls("ok") >= at_least

            async def committed() -> bool:
                stable = await _end_offsets(bootstrap, topic, isolation="read_committed")
                return sum(stable.values()) > 0

            await gateway.create_instance(body)
            await wait_for(lambda: polled(1), within=30)  # the baseline: existing rows are not emitted
            async with changes.flowing(per_tick=2, limit=3000):
                await wait_for(committed, within=30)
                await disrupt(gateway, changes)
                # The gateway recovers by itself: polls succeed again while the source goes on.
                recovered = await gateway.polls("ok") + 3
                await wait_for(lambda: polled(recovered), within=60)
            # Every change is now in the source; two more polls publish the last ones, and would
            # publish any change a second time if the checkpoint were behind.
            settled = await gateway.polls("ok") + 2
            await wait_for(lambda: polled(settled), within=30)
            failed = await gateway.polls("failed")
            events = await _read_committed_to_end(bootstrap, topic, within=30)

    assert changes.discrepancies(events) == {}
    return failed


async def test_broker_restart_during_polling_publishes_each_change_once(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    if _local_broker_pid(kafka_bootstrap) is None:
        pytest.skip("needs the local broker started by .ci/kafka.sh; a foreign cluster cannot be restarted")
    during_outage: list[int] = []

    async def restart_broker(_gateway: GatewayProcess, changes: LiveChanges) -> None:
        before = changes.count
        try:
            await _kafka_sh("down")
        finally:
            await _kafka_sh("up")
        during_outage.append(changes.count - before)

    await _each_change_once_through(
        restart_broker, bootstrap=kafka_bootstrap, unique=unique, log=tmp_path / "gateway.log", seed=37
    )
    assert during_outage[0] > 0, "the source made no change while the broker was down"


async def _fence(bootstrap: str, env: Mapping[str, str]) -> None:
    """Fence the gateway's transactional producers: a new producer under each transactional id bumps
    the epoch and aborts the transaction in flight, as the coordinator does to a transaction that
    outlived its timeout (for instance across a broker outage longer than that)."""
    prefix = env["GATEWAY_STATE_TOPIC_PREFIX"]
    for partition in range(int(env["GATEWAY_STATE_PARTITIONS"])):
        usurper = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=f"{prefix}-poller-{partition}"
        )
        await usurper.start()
        await usurper.stop()


async def test_a_fenced_poller_producer_is_replaced_and_each_change_is_published_once(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """A fenced producer can never begin another transaction; the gateway must replace it."""

    async def fence(gateway: GatewayProcess, _changes: LiveChanges) -> None:
        failed = await gateway.polls("failed")
        await _fence(kafka_bootstrap, gateway.env)

        async def poll_failed() -> bool:
            return await gateway.polls("failed") > failed

        await wait_for(poll_failed, within=30)

    failed = await _each_change_once_through(
        fence, bootstrap=kafka_bootstrap, unique=unique, log=tmp_path / "gateway.log", seed=41
    )
    assert failed >= 1


async def test_a_producer_fenced_in_the_middle_of_a_poll_is_replaced_and_the_poll_retried(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Fenced while a 100-page snapshot is being sent: the sends after the fence fail, the transaction is
    aborted, and the next poll publishes the whole snapshot once."""
    records, page_size = 20_000, 200
    async with Simulator(users=DEMO_USERS, seed=43) as sim:
        sim.state.bulk_load("accounts", records)
        ids = set(sim.state.tables["accounts"].rows)
        env = _gateway_env(kafka_bootstrap, unique)
        topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        body = _accounts_instance(sim, page_size=page_size, snapshot=True, refresh_minutes=1 / 60)
        async with running(GatewayProcess(env, tmp_path / "gateway.log")) as (gateway,):
            await gateway.create_instance(body)
            await wait_for(lambda: _page_requests(sim) >= 5, within=30)
            await _fence(kafka_bootstrap, env)
            assert _page_requests(sim) < records // page_size - 1, "the poll finished before the fence"

            async def failed_then_retried() -> bool:
                return await gateway.polls("failed") >= 1 and await gateway.polls("ok") >= 2

            await wait_for(failed_then_retried, within=60)
            events = await _read_committed_to_end(kafka_bootstrap, topic, within=30)

    assert len(events) == records
    assert len({e["id"] for e in events}) == records
    assert {e["subject"] for e in events} == ids
