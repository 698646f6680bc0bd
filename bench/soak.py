"""The soak (issue 12): `make soak`, outside `make test` and `make bench`.

    python -m bench.soak [--seconds 1200] [--rate 200]

Simulated traffic for `--seconds` at `--rate` changes a second, 80 % creates of new rows and 20 %
updates of rows created before, across two tables, which one change-tracking instance polls every
second. Inside that window the gateway is SIGKILLed at 25 % and at 70 % of it, and the broker is
restarted at 45 %; each is brought back at once. The soak runs a broker of its own (`.ci/kafka.sh`
with a port and a state folder of its own), so its restart disturbs no other user of :9092.

Then, read_committed from the start of each event topic: every row shows its last version, no version
of a row shows twice, and no event id shows twice. Change tracking hands over the net change since the
last poll, so a row created and updated between two polls arrives once, as UPDATED: that is counted and
reported, not failed. The gateway's resident
memory is sampled every five seconds; the result gives, per life of the process, the slope of the
least-squares line through its samples after a warm-up, in MiB per hour. Results go to stdout and to
bench/results/soak-<UTC date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from bench._gateway import Gateway
from bench._instances import instance_body, write_declared
from bench._procs import ROOT, answers, free_port, until
from gateway.sim import DEMO_USERS, Limits, Simulator

Event = dict[str, Any]  # a change event as read from its topic

_TABLES = ("accounts", "contacts")
_UNLIMITED = Limits(requests_per_window=10**12, window_seconds=1.0, max_concurrent=10**9)
_TICK_SECONDS = 0.1
_SAMPLE_SECONDS = 5.0
_CREATE_SHARE = 0.8
_NEVER = -1  # below every versionnumber


@dataclass(frozen=True, slots=True)
class SoakConfig:
    seconds: float = 1200.0
    rate: float = 200.0  # changes a second
    kills_at: tuple[float, ...] = (0.25, 0.70)  # fractions of the window
    broker_restart_at: float = 0.45
    warmup_seconds: float = 60.0  # of each life, left out of the memory slope
    drain_seconds: float = 120.0  # how long the events may take to arrive after the traffic


@dataclass(slots=True)
class Life:
    """One run of the gateway process, between a start and its kill or the end."""

    started: float
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, RSS bytes)

    def slope_mib_per_hour(self, warmup: float) -> float | None:
        kept = [(at, rss) for at, rss in self.samples if at - self.started >= warmup]
        if len(kept) < 3:
            return None
        mean_t = sum(at for at, _ in kept) / len(kept)
        mean_r = sum(rss for _, rss in kept) / len(kept)
        spread = sum((at - mean_t) ** 2 for at, _ in kept)
        if spread == 0:
            return None
        slope = sum((at - mean_t) * (rss - mean_r) for at, rss in kept) / spread  # bytes a second
        return slope * 3600 / 2**20


@dataclass(frozen=True, slots=True)
class SoakResult:
    seconds: float
    rate_asked: float
    changes_made: int
    rows_created: int
    rows_updated: int
    events_read: int
    duplicate_event_ids: int
    rows_missing: int  # created, and no event of them
    rows_stale: int  # their last version never arrived
    versions_twice: int  # a version of a row published more than once
    # Where the missing or stale ones were created: the first and last, as fractions of all creates.
    lost_span: tuple[float, float] | None
    first_seen_updated: int  # created and updated again before a poll saw them
    created_twice: int  # updated within their creation's second, so CREATED by the dates
    gateway_kills: int
    unplanned_exits: int
    broker_restarts: int
    rss_mib_first_last: list[tuple[float, float]]
    rss_slope_mib_per_hour: list[float | None]

    @property
    def exactly_once(self) -> bool:
        return (
            self.duplicate_event_ids == 0
            and self.rows_missing == 0
            and self.rows_stale == 0
            and self.versions_twice == 0
        )


class _Broker:
    """A private broker: `.ci/kafka.sh` with its own port pair and state folder."""

    def __init__(self, state: Path) -> None:
        self.port = _free_port_pair()
        self.bootstrap = f"localhost:{self.port}"
        env = {name: value for name, value in os.environ.items() if name != "GATEWAY_KAFKA_BOOTSTRAP_SERVERS"}
        self._env = {**env, "KAFKA_PORT": str(self.port), "KAFKA_STATE_DIR": str(state)}

    async def run(self, command: str) -> None:
        script = await asyncio.create_subprocess_exec(
            str(ROOT / ".ci" / "kafka.sh"), command, env=self._env, stdout=asyncio.subprocess.DEVNULL
        )
        if await asyncio.wait_for(script.wait(), timeout=240) != 0:
            raise RuntimeError(f"kafka.sh {command} failed for the soak's broker on {self.bootstrap}")


def _free_port_pair() -> int:
    """A port whose successor is free too: the broker's listener and its controller's."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no two consecutive free ports")


@contextlib.asynccontextmanager
async def _broker(state: Path) -> AsyncIterator[_Broker]:
    broker = _Broker(state)
    await broker.run("up")
    try:
        yield broker
    finally:
        await broker.run("down")


class _Traffic:
    """Creates and updates at a steady rate, remembering what it created."""

    def __init__(self, sim: Simulator, rate: float) -> None:
        self._sim = sim
        self._rate = rate
        self._rng = random.Random(7)
        self.created: dict[str, list[str]] = {table: [] for table in _TABLES}
        self.order: dict[str, int] = {}  # row -> how many rows were created before it
        self.table_of: dict[str, str] = {}
        self.updates = 0

    async def run(self, seconds: float) -> None:
        started = time.monotonic()
        done = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * self._rate) - done
            for _ in range(due):
                self._change()
            done += due
            await asyncio.sleep(_TICK_SECONDS)

    def _change(self) -> None:
        table = self._rng.choice(_TABLES)
        rows = self.created[table]
        if not rows or self._rng.random() < _CREATE_SHARE:
            record = self._sim.state.upsert(table)
            row = str(record[self._sim.state.table(table).spec.primary_key])
            self.order[row] = len(self.order)
            self.table_of[row] = table
            rows.append(row)
        else:
            self._sim.state.update(table, self._rng.choice(rows), {"description": f"soak {self.updates}"})
            self.updates += 1

    def last_versions(self) -> dict[str, int]:
        """Each created row's `versionnumber` now: what its last event must show."""
        return {
            row: int(self._sim.state.table(table).rows[row]["versionnumber"])
            for row, table in self.table_of.items()
        }


class _GatewayKeeper:
    """The gateway process: started, sampled, killed on schedule, restarted when it exits."""

    def __init__(self, *, log_dir: Path, bootstrap: str, prefix: str, instances: Path) -> None:
        self._log_dir = log_dir
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._instances = instances
        self.lives: list[Life] = []
        self.unplanned_exits = 0
        self._gateway: Gateway | None = None
        self._lock = asyncio.Lock()  # a kill and a sample do not interleave

    async def start(self) -> None:
        gateway = Gateway(
            f"soak-gateway-{len(self.lives)}",
            log_dir=self._log_dir,
            bootstrap=self._bootstrap,
            prefix=self._prefix,
            instances=self._instances,
            role="all",
        )
        await gateway.start(answers(f"{gateway.metrics_url}/readyz"), within=120)
        self._gateway = gateway
        self.lives.append(Life(started=time.monotonic()))

    def polled_once(self, resources: tuple[str, ...]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            if self._gateway is None:
                return False
            metrics = await self._gateway.metrics()
            return all(metrics.total("gateway_polls_total", resource=r, outcome="ok") >= 1 for r in resources)

        return check

    async def kill(self) -> None:
        async with self._lock:
            gateway = self._gateway
            if gateway is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(gateway.pid, signal.SIGKILL)
            await gateway.stop(grace=30)
            await self.start()

    async def sample(self, until: asyncio.Event) -> None:
        while not until.is_set():
            async with self._lock:
                gateway = self._gateway
                if gateway is not None and gateway.exited:
                    self.unplanned_exits += 1  # it ended by itself: start it again and go on
                    await self.start()
                elif gateway is not None:
                    self.lives[-1].samples.append((time.monotonic(), gateway.usage().rss_bytes))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), timeout=_SAMPLE_SECONDS)

    async def stop(self) -> None:
        if self._gateway is not None:
            await self._gateway.stop()


async def run(config: SoakConfig, *, log_dir: Path) -> SoakResult:
    async with (
        _broker(log_dir / "kafka") as broker,
        Simulator(port=free_port(), users=DEMO_USERS, limits=_UNLIMITED, request_log_size=100) as sim,
    ):
        prefix = f"soak-{int(time.time())}"
        body = instance_body("soak", sim.base_url, resources=_TABLES, refresh_seconds=1.0, page_size=5000)
        instances = write_declared(log_dir / "instances.json", [body])
        keeper = _GatewayKeeper(
            log_dir=log_dir, bootstrap=broker.bootstrap, prefix=prefix, instances=instances
        )
        await keeper.start()
        # Change tracking begins with a baseline call whose rows are not news: a change made before
        # it is not an event, so the traffic waits for each table's first poll.
        await until(keeper.polled_once(_TABLES), every=0.2, within=120, what="the first poll of each table")
        traffic = _Traffic(sim, config.rate)
        stop_sampling = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(keeper.sample(stop_sampling), name="soak-sample")
            changes = group.create_task(traffic.run(config.seconds), name="soak-traffic")
            await _disturb(config, keeper, broker)
            await changes
            events = await _read_events(
                broker.bootstrap,
                [f"{prefix}.crm.{table}" for table in _TABLES],
                last_versions=traffic.last_versions(),
                within=config.drain_seconds,
            )
            stop_sampling.set()
        await keeper.stop()
    return _result(config, traffic, keeper, events)


async def _read_events(
    bootstrap: str, topics: list[str], *, last_versions: dict[str, int], within: float
) -> list[Event]:
    """Every event of `topics` that read_committed shows, once each row has shown its last version
    (or `within` passed), and then for a quiet second more, so that late repeats show."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    events: list[Event] = []
    waiting = dict(last_versions)
    await consumer.start()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while waiting:
                    for batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                        for record in batch:
                            event = orjson.loads(record.value)
                            events.append(event)
                            row = event["subject"]
                            if row in waiting and _version_of(event) >= waiting[row]:
                                del waiting[row]
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            events.extend(orjson.loads(record.value) for record in batch)
    finally:
        await consumer.stop()
    return events


async def _disturb(config: SoakConfig, keeper: _GatewayKeeper, broker: _Broker) -> None:
    """The kills and the broker restart, each at its moment of the window."""
    started = time.monotonic()
    plan = sorted([(at, "kill") for at in config.kills_at] + [(config.broker_restart_at, "broker")])
    for at, what in plan:
        await asyncio.sleep(max(0.0, started + at * config.seconds - time.monotonic()))
        print(f"soak: {what} at {time.monotonic() - started:.0f} s", flush=True)
        if what == "kill":
            await keeper.kill()
        else:
            await broker.run("down")
            await broker.run("up")


def _version_of(event: Event) -> int:
    return int(event["data"]["raw"]["attributes"]["versionnumber"])


def _result(
    config: SoakConfig,
    traffic: _Traffic,
    keeper: _GatewayKeeper,
    events: list[Event],
) -> SoakResult:
    ids = Counter(event["id"] for event in events)
    versions = Counter((event["subject"], _version_of(event)) for event in events)
    newest: dict[str, int] = {}
    for row, version in versions:
        newest[row] = max(version, newest.get(row, _NEVER))
    first_type: dict[str, str] = {}
    for event in events:  # one row's events share a partition, so they come in order
        first_type.setdefault(event["subject"], event["data"]["eventType"])
    creations = Counter(event["subject"] for event in events if event["data"]["eventType"] == "CREATED")
    last_versions = traffic.last_versions()
    missing = {row for row in last_versions if row not in newest}
    stale = {row for row, version in last_versions.items() if row in newest and newest[row] < version}
    positions = sorted(traffic.order[row] / max(1, len(last_versions)) for row in missing | stale)
    return SoakResult(
        seconds=config.seconds,
        rate_asked=config.rate,
        changes_made=len(last_versions) + traffic.updates,
        rows_created=len(last_versions),
        rows_updated=traffic.updates,
        events_read=len(events),
        duplicate_event_ids=sum(count - 1 for count in ids.values()),
        rows_missing=len(missing),
        rows_stale=len(stale),
        versions_twice=sum(count - 1 for count in versions.values()),
        lost_span=(positions[0], positions[-1]) if positions else None,
        first_seen_updated=sum(1 for row in last_versions if first_type.get(row) == "UPDATED"),
        created_twice=sum(1 for row in last_versions if creations[row] > 1),
        gateway_kills=len(config.kills_at),
        unplanned_exits=keeper.unplanned_exits,
        broker_restarts=1,
        rss_mib_first_last=[
            (life.samples[0][1] / 2**20, life.samples[-1][1] / 2**20) for life in keeper.lives if life.samples
        ],
        rss_slope_mib_per_hour=[life.slope_mib_per_hour(config.warmup_seconds) for life in keeper.lives],
    )


def _report(result: SoakResult) -> str:
    slopes = ", ".join("n/a" if s is None else f"{s:+.1f}" for s in result.rss_slope_mib_per_hour)
    memory = ", ".join(f"{first:.0f}→{last:.0f}" for first, last in result.rss_mib_first_last)
    return (
        f"soak: {result.seconds:.0f} s at {result.rate_asked:g} changes/s: {result.changes_made} changes "
        f"({result.rows_created} creates, {result.rows_updated} updates), {result.events_read} events read\n"
        f"soak: {result.gateway_kills} SIGKILLs, {result.broker_restarts} broker restart, "
        f"{result.unplanned_exits} unplanned exits\n"
        f"soak: rows missing {result.rows_missing}, rows without their last version {result.rows_stale} "
        f"(created within {result.lost_span}), versions twice {result.versions_twice}, duplicate event "
        f"ids {result.duplicate_event_ids}: {'exactly once' if result.exactly_once else 'NOT exactly once'}\n"
        f"soak: rows first seen as UPDATED {result.first_seen_updated} (created and updated between two "
        f"polls), rows CREATED twice {result.created_twice} (updated within their creation's second)\n"
        f"soak: RSS MiB per life (first→last sample) {memory}; slope MiB/hour per life {slopes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    args = parser.parse_args()
    # A short run (a try of the soak itself) keeps most of each life in the slope.
    config = SoakConfig(seconds=args.seconds, rate=args.rate, warmup_seconds=min(60.0, args.seconds / 10))
    log_dir = ROOT / ".cache" / "soak" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    log_dir.mkdir(parents=True)
    print(f"soak: logs in {log_dir.relative_to(ROOT)}", flush=True)
    result = asyncio.run(run(config, log_dir=log_dir))
    print(_report(result))
    out = ROOT / "bench" / "results" / f"soak-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_bytes(orjson.dumps(asdict(result), option=orjson.OPT_INDENT_2))
    print(f"soak: results in {out.relative_to(ROOT)}")
    raise SystemExit(0 if result.exactly_once else 1)


if __name__ == "__main__":
    main()
