"""Crash and restart: the gateway killed with SIGKILL in the middle of a poll, the broker restarted
during polling, and the gateway's transactional producer fenced. Each time a read_committed consumer
sees each change exactly once.

The gateway runs as a real `event-gateway run` process configured by GATEWAY_* variables; the
simulator runs in the test process, and the tests read the log of requests it answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from gateway.events import decode
from gateway.sim import DEMO_USERS, Simulator
from tests.conftest import ADMIN_TOKEN, ROOT, SECRET_KEY, wait_for

ACCOUNTS_URL = "/api/data/v9.2/accounts"
TOPIC_PARTITIONS = 3
_LOCAL_BROKERS = ("localhost:9092", "127.0.0.1:9092")
_KAFKA_SH = ROOT / ".ci" / "kafka.sh"
_BROKER_PIDFILE = ROOT / ".cache" / "kafka" / "broker.pid"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gateway_env(bootstrap: str, unique: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env.update(
        GATEWAY_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        GATEWAY_TOPIC_PREFIX=f"crash-{unique}",
        GATEWAY_STATE_TOPIC_PREFIX=f"crash-{unique}-gw",
        GATEWAY_STATE_PARTITIONS="2",
        GATEWAY_TOPIC_PARTITIONS=str(TOPIC_PARTITIONS),
        GATEWAY_API_HOST="127.0.0.1",
        GATEWAY_API_PORT=str(_free_port()),
        GATEWAY_METRICS_PORT=str(_free_port()),
        GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        GATEWAY_SECRET_KEY=SECRET_KEY,
        GATEWAY_POLL_OVERLAP_SECONDS="5",
        # A killed replica's partitions move once its session expires; 6 s is the broker's minimum.
        GATEWAY_POLLER_SESSION_TIMEOUT_SECONDS="6",
        GATEWAY_LOG_LEVEL="INFO",
    )
    return env


@dataclass
class _Gateway:
    """`event-gateway run` as a child process, its output appended to `log`."""

    env: Mapping[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_API_PORT']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_METRICS_PORT']}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "run",
                env=dict(self.env),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        await wait_for(self._answers, within=30)

    async def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.returncode is None, f"the gateway exited:\n{self.tail()}"
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{self.api_url}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, the open transaction is left as it is."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def create_instance(self, body: dict[str, Any]) -> str:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.post(f"{self.api_url}/instances", json=body) as response,
        ):
            payload = await response.json()
            assert response.status == 201, payload
            return str(payload["id"])

    async def polls(self, outcome: str = "ok") -> float:
        """`gateway_polls_total` of the accounts resource, from the process's /metrics."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.metrics_url}/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "gateway_polls_total" and sample.labels == {
                    "resource": "accounts",
                    "outcome": outcome,
                }:
                    return float(sample.value)
        return 0.0

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def _running(gateway: _Gateway) -> AsyncIterator[_Gateway]:
    try:
        await gateway.start()
        yield gateway
    except BaseException:
        print(f"--- gateway log ({gateway.log}) ---\n{gateway.tail()}")
        raise
    finally:
        await gateway.kill()


def _accounts_instance(
    sim: Simulator, *, page_size: int, snapshot: bool, refresh_minutes: float
) -> dict[str, Any]:
    """An instance polling only accounts, by change tracking."""
    user, password = next(iter(DEMO_USERS.items()))
    accounts: dict[str, Any] = {
        "url": "/hubs/crm/accounts?where=fetchChanges='true'",
        "idField": "id",
        "pageSize": page_size,
        "datesConfiguration": {
            "updatedDateField": "attributes.modifiedon",
            "updatedDateFormat": "milliseconds",
            "createdDateField": "attributes.createdon",
            "createdDateFormat": "milliseconds",
        },
    }
    if snapshot:
        accounts["snapshot"] = True
    return {
        "element": {"key": "dynamicscrmadfs"},
        "configuration": {
            "user.username": user,
            "user.password": password,
            "dynamics.base.url": sim.base_url,
            "event.notification.enabled": "true",
            "event.poller.refresh_interval": str(refresh_minutes),
            "event.poller.configuration": {"accounts": accounts},
        },
        "tags": ["crash"],
        "name": "crash",
    }


def _page_requests(sim: Simulator) -> int:
    """Answered requests for a page after the first of an accounts query."""
    return sum(
        1
        for record in list(sim.requests)
        if record.path == ACCOUNTS_URL and "$skiptoken" in record.query and record.status == 200
    )


async def _end_offsets(bootstrap: str, topic: str, *, isolation: str) -> dict[int, int]:
    """Per partition: the high watermark (read_uncommitted) or the last stable offset (read_committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(TOPIC_PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def _read_committed_to_end(bootstrap: str, topic: str, *, within: float) -> list[dict[str, Any]]:
    """Every event a read_committed consumer finds from the beginning up to the last stable offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(TOPIC_PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(within):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batches = await consumer.getmany(*partitions, timeout_ms=200, max_records=10_000)
                for batch in batches.values():
                    events.extend(decode(r.value or b"", r.headers) for r in batch)
    finally:
        await consumer.stop()
    return events


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

        async with _running(_Gateway(env, tmp_path / "first.log")) as first:
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

        async with _running(_Gateway(env, tmp_path / "second.log")) as second:
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
        # The aborted attempt stays in the log, invisible: the log holds more than the committed events.
        total = await _end_offsets(kafka_bootstrap, topic, isolation="read_uncommitted")
        assert sum(total.values()) > records


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


@dataclass
class _Changes:
    """A live source: new accounts and updates and deletes of existing ones, each row changed at most
    once, so that no two changes can fold into one under change tracking."""

    sim: Simulator
    updatable: list[str]
    deletable: list[str]
    made: set[tuple[str, datetime]] = field(default_factory=set)  # (id, modifiedon)
    deleted: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.made) + len(self.deleted)

    async def run(self, *, per_tick: int, limit: int) -> None:
        while self.count < limit:
            for _ in range(per_tick):
                row = self.sim.state.upsert("accounts")
                self.made.add((row["accountid"], _parse_time(row["modifiedon"])))
                if self.updatable:
                    row = self.sim.state.update("accounts", self.updatable.pop(), {"telephone1": "555-0100"})
                    self.made.add((row["accountid"], _parse_time(row["modifiedon"])))
            if self.deletable:
                record_id = self.deletable.pop()
                self.sim.state.delete("accounts", record_id)
                self.deleted.add(record_id)
            await asyncio.sleep(0.05)  # paces the source; nothing waits on it


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


Disruption = Callable[[_Gateway, _Changes], Awaitable[None]]


async def _each_change_once_through(
    disrupt: Disruption, *, bootstrap: str, unique: str, log: Path, seed: int
) -> float:
    """Poll a live source by change tracking, `disrupt` the gateway while it runs, and check that a
    read_committed consumer sees each change once. Returns the number of failed polls."""
    async with Simulator(users=DEMO_USERS, seed=seed) as sim:
        sim.state.bulk_load("accounts", 2000)
        existing = sorted(sim.state.tables["accounts"].rows)
        changes = _Changes(sim, updatable=existing[:1000], deletable=existing[1000:])
        env = _gateway_env(bootstrap, unique)
        topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        body = _accounts_instance(sim, page_size=50, snapshot=False, refresh_minutes=1 / 60)
        async with _running(_Gateway(env, log)) as gateway:

            async def polled(at_least: float) -> bool:
                return await gateway.polls("ok") >= at_least

            async def committed() -> bool:
                stable = await _end_offsets(bootstrap, topic, isolation="read_committed")
                return sum(stable.values()) > 0

            await gateway.create_instance(body)
            await wait_for(lambda: polled(1), within=30)  # the baseline: existing rows are not emitted
            source = asyncio.create_task(changes.run(per_tick=2, limit=3000))
            try:
                await wait_for(committed, within=30)
                await disrupt(gateway, changes)
                # The gateway recovers by itself: polls succeed again while the source goes on.
                recovered = await gateway.polls("ok") + 3
                await wait_for(lambda: polled(recovered), within=60)
            finally:
                source.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await source
            # Every change is now in the source; two more polls publish the last ones, and would
            # publish any change a second time if the checkpoint were behind.
            settled = await gateway.polls("ok") + 2
            await wait_for(lambda: polled(settled), within=30)
            failed = await gateway.polls("failed")
            events = await _read_committed_to_end(bootstrap, topic, within=30)

    assert len({e["id"] for e in events}) == len(events)
    upserts = Counter(
        (e["subject"], _parse_time(e["time"])) for e in events if e["type"] != "crm.accounts.deleted"
    )
    deletes = Counter(e["subject"] for e in events if e["type"] == "crm.accounts.deleted")
    assert set(upserts) == changes.made
    assert set(deletes) == changes.deleted
    assert max(upserts.values()) == 1
    assert max(deletes.values()) == 1
    return failed


async def test_broker_restart_during_polling_publishes_each_change_once(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    if _local_broker_pid(kafka_bootstrap) is None:
        pytest.skip("needs the local broker started by .ci/kafka.sh; a foreign cluster cannot be restarted")
    during_outage: list[int] = []

    async def restart_broker(_gateway: _Gateway, changes: _Changes) -> None:
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

    async def fence(gateway: _Gateway, _changes: _Changes) -> None:
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
        async with _running(_Gateway(env, tmp_path / "gateway.log")) as gateway:
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
