"""Graceful shutdown: SIGTERM to an `event-gateway run` process in the middle of a poll and of webhook
deliveries. It answers /readyz 503 at once, aborts the poll's transaction, lets the deliveries in
flight finish, commits their offsets, and exits 0 within GATEWAY_SHUTDOWN_TIMEOUT_SECONDS. Its
restart then publishes each change once and delivers again nothing that was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gateway import cli, runtime
from gateway.settings import Settings
from gateway.sim import DEMO_USERS, Simulator
from tests._events import decode
from tests.conftest import wait_for
from tests.delivery._support import receiving
from tests.polling._processes import (
    GatewayProcess,
    accounts_instance,
    end_offsets,
    gateway_env,
    read_committed_to_end,
    running,
)

PARTITIONS = 2
SHUTDOWN_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 5.0
ACCOUNTS = 60  # one instance's snapshot, committed, then delivered slowly
CONTACTS = 5000  # another's, in the poll that SIGTERM interrupts: enough to fill producer batches
_USER, _PASSWORD = next(iter(DEMO_USERS.items()))


def _contacts_instance(sim: Simulator) -> dict[str, Any]:
    """An instance publishing a snapshot of every contact, in pages of 500. It has no callback URL:
    its polling is on (`event.notification.enabled`), its webhooks off."""
    body = accounts_instance(sim, user=_USER, password=_PASSWORD, page_size=500, snapshot=True)
    poller = body["configuration"]["event.poller.configuration"]
    contacts = poller.pop("accounts")
    contacts["url"] = "/hubs/crm/contacts?where=fetchChanges='true'"
    poller["contacts"] = contacts
    body["name"] = "shutdown-contacts"
    return body


@dataclass
class SlowCallback:
    """Answers 200 after `delay` seconds; records which webhooks it answered and which are in flight."""

    delay: float = 1.5
    answered: Counter[str] = field(default_factory=Counter)
    in_flight: set[str] = field(default_factory=set)

    async def __call__(self, _attempt: int, request: web.Request) -> web.StreamResponse:
        webhook_id = request.headers["webhook-id"]
        self.in_flight.add(webhook_id)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight.discard(webhook_id)
        self.answered[webhook_id] += 1
        return web.Response(status=200)


@dataclass
class Readiness:
    """/readyz as seen by a probe every 20 ms: (monotonic time, status or None when refused)."""

    url: str
    seen: list[tuple[float, int | None]] = field(default_factory=list)

    async def probe(self) -> None:
        timeout = aiohttp.ClientTimeout(total=1)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    async with http.get(self.url) as response:
                        status: int | None = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = None
                self.seen.append((time.monotonic(), status))
                await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def probing(self) -> AsyncIterator[Readiness]:
        task = asyncio.create_task(self.probe())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _offsets_of(bootstrap: str, topic: str) -> dict[str, tuple[int, int]]:
    """Each committed event's (partition, offset), by event id."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    found: dict[str, tuple[int, int]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(30):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for tp, batch in (await consumer.getmany(*partitions, timeout_ms=200)).items():
                    for record in batch:
                        event = decode(record.value or b"", record.headers)
                        found[str(event["id"])] = (tp.partition, record.offset)
    finally:
        await consumer.stop()
    return found


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


def _json_lines(log: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(180)
async def test_sigterm_mid_poll_and_mid_delivery_stops_cleanly_within_the_bound(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    callback = SlowCallback()
    async with Simulator(users=DEMO_USERS, seed=43) as sim, receiving(callback) as receiver:
        sim.state.bulk_load("accounts", ACCOUNTS)
        sim.state.bulk_load("contacts", CONTACTS)
        env = gateway_env(
            kafka_bootstrap,
            f"shutdown-{unique}",
            topic_partitions=str(PARTITIONS),
            delivery_topic_partitions=str(PARTITIONS),
            callback_allowed_networks="127.0.0.0/8",
            delivery_timeout_seconds=f"{DELIVERY_TIMEOUT:g}",
            # Few deliveries at once, so that those in flight at SIGTERM finish within the grace.
            delivery_max_pending="8",
            delivery_metadata_max_age_ms="500",
            shutdown_timeout_seconds=f"{SHUTDOWN_TIMEOUT:g}",
        )
        accounts_topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"
        contacts_topic = f"{env['GATEWAY_TOPIC_PREFIX']}.crm.contacts"
        group = f"{env['GATEWAY_STATE_TOPIC_PREFIX']}-deliverer"
        accounts = accounts_instance(
            sim, user=_USER, password=_PASSWORD, page_size=20, snapshot=True, name="shutdown-accounts"
        )
        accounts["configuration"]["event.notification.callback.url"] = receiver.url

        first = GatewayProcess(env, tmp_path / "first.log")
        async with running(first):
            await first.create_instance(accounts)

            async def accounts_committed() -> bool:
                return await first.polls("ok") >= 1

            await wait_for(accounts_committed, within=30)
            # The contacts' snapshot pages slowly, in one transaction that stays open for seconds.
            sim.faults.latency_ms = 700
            await first.create_instance(_contacts_instance(sim))

            async def poll_and_deliveries_in_flight() -> bool:
                topic = contacts_topic
                try:
                    written = await end_offsets(
                        kafka_bootstrap, topic, PARTITIONS, isolation="read_uncommitted"
                    )
                    stable = await end_offsets(kafka_bootstrap, topic, PARTITIONS, isolation="read_committed")
                except KafkaError:  # the topic is not there yet
                    return False
                return sum(written.values()) > sum(stable.values()) and bool(callback.in_flight)

            await wait_for(poll_and_deliveries_in_flight, within=30)
            in_flight_at_sigterm = set(callback.in_flight)
            readiness = Readiness(f"{first.metrics_url}/readyz")
            async with readiness.probing():
                await wait_for(lambda: bool(readiness.seen))
                assert readiness.seen[-1][1] == 200
                assert first.process is not None
                signalled = time.monotonic()
                first.process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(SHUTDOWN_TIMEOUT + 10):
                    status = await first.process.wait()
                exited = time.monotonic()
            sim.faults.latency_ms = 0
        took = exited - signalled
        print(f"SIGTERM to exit: {took:.2f} s; {len(in_flight_at_sigterm)} webhooks in flight then")
        assert status == 0, first.tail()
        assert took < SHUTDOWN_TIMEOUT

        # Not ready from the start of the shutdown until the port closed; never ready again.
        after = [(at, code) for at, code in readiness.seen if at > signalled]
        first_503 = next(at for at, code in after if code == 503)
        assert first_503 - signalled < 0.5
        assert 200 not in {code for at, code in after if at >= first_503}

        # The interrupted poll's transaction was aborted: none of what it wrote is visible.
        assert await read_committed_to_end(kafka_bootstrap, contacts_topic, PARTITIONS, within=30) == []
        # The webhooks in flight at SIGTERM were answered, and every answered one is committed.
        assert in_flight_at_sigterm <= set(callback.answered)
        answered_before = set(callback.answered)
        offsets = await _offsets_of(kafka_bootstrap, accounts_topic)
        committed = await _committed(kafka_bootstrap, group, accounts_topic)
        assert len(offsets) == ACCOUNTS
        assert answered_before <= set(offsets)
        uncommitted = {i for i in answered_before if offsets[i][1] >= committed[offsets[i][0]]}
        assert not uncommitted, "answered webhooks whose offsets were not committed"

        lines = _json_lines(first.log)
        assert all({"time", "level", "logger", "message", "role"} <= line.keys() for line in lines)
        messages = [str(line["message"]) for line in lines]
        assert any(m.startswith("shutting down within") for m in messages)
        assert any(m.startswith("waiting up to 5 s for") for m in messages)  # the deliverer drained
        assert not any("cancelled at shutdown" in m for m in messages)
        assert any(m.startswith("stopped in") for m in messages)

        callback.delay = 0.0
        second = GatewayProcess(env, tmp_path / "second.log")
        async with running(second):
            await wait_for(lambda: len(callback.answered) >= ACCOUNTS, within=60)
            contacts = await read_committed_to_end(kafka_bootstrap, contacts_topic, PARTITIONS, within=60)
            while len(contacts) < CONTACTS:
                await asyncio.sleep(0.5)
                contacts = await read_committed_to_end(kafka_bootstrap, contacts_topic, PARTITIONS, within=60)
            await asyncio.sleep(1.0)  # a repeated delivery, if any, would come now

    # The restart polled again what the aborted transaction held, and published each contact once.
    assert len(contacts) == CONTACTS
    assert len({e["subject"] for e in contacts}) == CONTACTS
    # Each account delivered; none answered before the SIGTERM delivered again.
    assert set(callback.answered) == set(offsets)
    assert not {i for i in answered_before if callback.answered[i] > 1}


class _FakeGateway:
    """Stands in for `runtime.start_gateway`: says when it has started; a stuck one has a poller that
    never stops and a shutdown that never ends."""

    def __init__(self, *, stuck: bool) -> None:
        self.started = asyncio.Event()
        self._stuck = stuck

    @contextlib.asynccontextmanager
    async def __call__(self, *_args: object, **_kwargs: object) -> AsyncIterator[runtime.RunningGateway]:
        poller = asyncio.create_task(asyncio.sleep(3600), name="poll-i-1:accounts")
        self.started.set()
        try:
            yield runtime.RunningGateway(
                api_url=None, metrics_url="http://127.0.0.1:1", admin_token="", failure=asyncio.Event().wait
            )
        finally:
            try:
                if self._stuck:
                    await asyncio.sleep(3600)
            finally:
                poller.cancel()


async def _stop_once_started(
    run: asyncio.Task[bool], stop: asyncio.Event, gateway: _FakeGateway
) -> tuple[bool, float]:
    async with asyncio.timeout(5):
        await gateway.started.wait()
    assert not run.done()
    stop.set()
    started = time.monotonic()
    return await run, time.monotonic() - started


async def test_past_the_bound_what_did_not_stop_is_logged_and_cancelled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = _FakeGateway(stuck=True)
    monkeypatch.setattr(runtime, "start_gateway", gateway)
    settings = Settings(shutdown_timeout_seconds=0.5)
    stop = asyncio.Event()
    run = asyncio.create_task(runtime.run_until_stopped(settings, role="all", instances_path=None, stop=stop))
    with caplog.at_level(logging.INFO, logger="gateway.runtime"):
        stopped, took = await _stop_once_started(run, stop, gateway)
    assert stopped is False
    assert 0.5 <= took < 1.5
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "shutdown took longer than 0.5 s; cancelling what has not stopped"
    assert "poll-i-1:accounts" in record.__dict__["unfinished"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() in ("gateway", "poll-i-1:accounts")]


async def test_a_quick_shutdown_is_clean(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = _FakeGateway(stuck=False)
    monkeypatch.setattr(runtime, "start_gateway", gateway)
    stop = asyncio.Event()
    run = asyncio.create_task(
        runtime.run_until_stopped(Settings(), role="all", instances_path=None, stop=stop)
    )
    with caplog.at_level(logging.INFO, logger="gateway.runtime"):
        stopped, _took = await _stop_once_started(run, stop, gateway)
    assert stopped is True
    assert [r.getMessage() for r in caplog.records][-1].startswith("stopped in")


@pytest.mark.parametrize(("clean", "status"), [(True, 0), (False, 1)])
def test_the_exit_status_says_whether_the_shutdown_was_clean(
    monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger, clean: bool, status: int
) -> None:
    async def run_until_stopped(*_args: object, **_kwargs: object) -> bool:
        return clean

    monkeypatch.setattr(cli, "run_until_stopped", run_until_stopped)
    assert cli.main(["run"]) == status
