"""Real gateway processes for the end-to-end tests: `event-gateway run` children configured by GATEWAY_*
variables, their /metrics read over HTTP, signals sent to them by pid; and what those tests check
them with: a live source in the simulator and read_committed readers of the event topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim import Simulator
from tests._events import decode
from tests.conftest import ADMIN_TOKEN, ROOT, SECRET_KEY, wait_for

ACCOUNTS_URL = "/api/data/v9.2/accounts"
# A killed replica's partitions move once its session expires; 6 s is the broker's minimum.
SESSION_TIMEOUT_SECONDS = 6.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_env(bootstrap: str, prefix: str, **settings: str) -> dict[str, str]:
    """The environment of a gateway on loopback with its own topics (`prefix`) and free ports;
    `settings` add or replace GATEWAY_* variables, named in lower case without the prefix."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env.update(
        GATEWAY_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        GATEWAY_TOPIC_PREFIX=prefix,
        GATEWAY_STATE_TOPIC_PREFIX=f"{prefix}-gw",
        GATEWAY_STATE_PARTITIONS="2",
        GATEWAY_TOPIC_PARTITIONS="3",
        GATEWAY_API_HOST="127.0.0.1",
        GATEWAY_API_PORT=str(free_port()),
        GATEWAY_METRICS_PORT=str(free_port()),
        GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        GATEWAY_SECRET_KEY=SECRET_KEY,
        GATEWAY_POLL_OVERLAP_SECONDS="5",
        GATEWAY_POLLER_SESSION_TIMEOUT_SECONDS=str(SESSION_TIMEOUT_SECONDS),
        GATEWAY_LOG_LEVEL="INFO",
    )
    env.update({f"GATEWAY_{name.upper()}": value for name, value in settings.items()})
    return env


@dataclass
class GatewayProcess:
    """`event-gateway run --role <role>` as a child process, its output appended to `log`."""

    env: Mapping[str, str]
    log: Path
    role: str = "all"
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    @classmethod
    def replica(cls, env: Mapping[str, str], name: str, *, logs: Path, role: str = "all") -> GatewayProcess:
        """One replica of a group sharing `env`: its own ports, and `name` as its static identity."""
        own = dict(env)
        own.update(
            GATEWAY_API_PORT=str(free_port()),
            GATEWAY_METRICS_PORT=str(free_port()),
            GATEWAY_GROUP_INSTANCE_ID=name,
        )
        return cls(own, logs / f"{name}.log", role)

    @property
    def name(self) -> str:
        return self.env.get("GATEWAY_GROUP_INSTANCE_ID", self.log.stem)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_API_PORT']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_METRICS_PORT']}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start the process and return once its servers answer."""
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "run",
                "--role",
                self.role,
                env=dict(self.env),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        await wait_for(self._answers, within=30)

    async def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.returncode is None, f"{self.name} exited:\n{self.tail()}"
        url = self.api_url if self.role in ("all", "api") else self.metrics_url
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, the open transaction is left as it is. Also ends a paused one."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def terminate(self, *, within: float = 30.0) -> int:
        """SIGTERM, as Kubernetes stops a pod, and wait for the exit; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(within):
            return await self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but runs no code, as in a long GC pause."""
        assert self.process is not None
        assert self.process.returncode is None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        assert self.process.returncode is None
        self.process.send_signal(signal.SIGCONT)

    async def create_instance(self, body: dict[str, Any]) -> str:
        payload = await self._admin("POST", "/instances", status=201, json=body)
        return str(payload["id"])

    async def cluster(self) -> dict[str, Any]:
        """`GET /cluster`: the poller group as the broker describes it."""
        return await self._admin("GET", "/cluster", status=200)

    async def _admin(self, method: str, path: str, *, status: int, json: Any = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.request(method, f"{self.api_url}{path}", json=json) as response,
        ):
            payload: dict[str, Any] = await response.json()
            assert response.status == status, payload
            return payload

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`, from the process's /metrics."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.metrics_url}/metrics") as response:
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    async def polls(self, outcome: str = "ok") -> float:
        """`gateway_polls_total` of the accounts resource."""
        return await self.metric("gateway_polls_total", resource="accounts", outcome=outcome)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def running(*gateways: GatewayProcess) -> AsyncIterator[tuple[GatewayProcess, ...]]:
    """Start the gateways together; on a failure show their logs; in every case kill what still runs."""
    try:
        async with asyncio.TaskGroup() as starting:  # one that fails to start cancels the others
            for gateway in gateways:
                starting.create_task(gateway.start())
        yield gateways
    except BaseException:
        for gateway in gateways:
            print(f"--- {gateway.name} ({gateway.log}) ---\n{gateway.tail()}")
        raise
    finally:
        for gateway in gateways:
            await gateway.kill()


def accounts_instance(
    sim: Simulator,
    *,
    user: str,
    password: str,
    page_size: int,
    snapshot: bool = False,
    refresh_minutes: float = 1 / 60,
    name: str = "crash",
) -> dict[str, Any]:
    """An instance polling only accounts, by change tracking, as `user`."""
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
        "tags": ["test"],
        "name": name,
    }


@dataclass
class LiveChanges:
    """A live source: new accounts and updates and deletes of existing ones, each row changed at most
    once, so that no two changes can fold into one under change tracking."""

    sim: Simulator
    updatable: list[str]
    deletable: list[str]
    made: set[tuple[str, datetime]] = field(default_factory=set)  # (id, modifiedon)
    deleted: set[str] = field(default_factory=set)

    @classmethod
    def on_existing(cls, sim: Simulator, rows: int) -> LiveChanges:
        """Load `rows` accounts, half of them to update, half to delete."""
        sim.state.bulk_load("accounts", rows)
        existing = sorted(sim.state.tables["accounts"].rows)
        return cls(sim, updatable=existing[: rows // 2], deletable=existing[rows // 2 :])

    @property
    def count(self) -> int:
        return len(self.made) + len(self.deleted)

    async def run(self, *, per_tick: int, limit: int, tick: float = 0.05) -> None:
        while self.count < limit:
            for _ in range(per_tick):
                row = self.sim.state.upsert("accounts")
                self.made.add((row["accountid"], parse_time(row["modifiedon"])))
                if self.updatable:
                    row = self.sim.state.update("accounts", self.updatable.pop(), {"telephone1": "555-0100"})
                    self.made.add((row["accountid"], parse_time(row["modifiedon"])))
            if self.deletable:
                record_id = self.deletable.pop()
                self.sim.state.delete("accounts", record_id)
                self.deleted.add(record_id)
            await asyncio.sleep(tick)  # paces the source; nothing waits on it

    @contextlib.asynccontextmanager
    async def flowing(
        self, *, per_tick: int, limit: int, tick: float = 0.05
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Run the source in the background for the block; it stops at `limit` changes or at the end."""
        task = asyncio.create_task(self.run(per_tick=per_tick, limit=limit, tick=tick))
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def discrepancies(self, events: Iterable[dict[str, Any]]) -> dict[str, int]:
        """How `events` differ from the changes made, which they should hold exactly once each: {} if not."""
        upserts = Counter(
            (e["subject"], parse_time(e["time"])) for e in events if e["type"] != "crm.accounts.deleted"
        )
        deletes = Counter(e["subject"] for e in events if e["type"] == "crm.accounts.deleted")
        found = {
            "missing": len(self.made - upserts.keys()) + len(self.deleted - deletes.keys()),
            "duplicated": sum(n - 1 for n in (*upserts.values(), *deletes.values())),
            "unexpected": len(upserts.keys() - self.made) + len(deletes.keys() - self.deleted),
        }
        return {name: count for name, count in found.items() if count}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def end_offsets(bootstrap: str, topic: str, partitions: int, *, isolation: str) -> dict[int, int]:
    """Per partition: the high watermark (read_uncommitted) or the last stable offset (read_committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def read_committed_to_end(
    bootstrap: str, topic: str, partitions: int, *, within: float
) -> list[dict[str, Any]]:
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
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        async with asyncio.timeout(within):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batches = await consumer.getmany(*assigned, timeout_ms=200, max_records=10_000)
                for batch in batches.values():
                    events.extend(decode(r.value or b"", r.headers) for r in batch)
    finally:
        await consumer.stop()
    return events


class EventTail:
    """A read_committed consumer of an event topic, from its beginning, counting events by instance."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
        )
        self._task: asyncio.Task[None] | None = None
        self.by_instance: Counter[str] = Counter()

    async def __aenter__(self) -> EventTail:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._task = asyncio.create_task(self._tail())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _tail(self) -> None:
        while True:
            for batch in (await self._consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for record in batch:
                    source = decode(record.value or b"", record.headers)["source"]
                    self.by_instance[source.removeprefix("/instances/")] += 1
