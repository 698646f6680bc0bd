"""Benchmark 3, latency: a steady stream of changes (the simulator's generator, R changes/s over the seven
tables) polled by change tracking every second and delivered as webhooks by one gateway process
(`event-gateway run --role all`) to a receiver in its own process.

For each event delivered in the measurement window:

- Kafka commit -> webhook receipt: the receipt time minus the moment the event's offset became readable to
  read_committed consumers. The benchmark samples every event topic's last stable offsets every 5 ms; an
  offset became readable after the request before the first sample covering it was sent, and before that
  sample's answer came. The figure uses the earlier bound, so it errs on the slow side by at most one
  sampling interval and a round trip; the later bound is in the details.
- source change -> receipt: the receipt time minus the event's `time` (the row's `modifiedon`; deletes,
  whose time is when they were seen, are left out). Dataverse and the simulator stamp whole seconds, so
  this errs on the slow side by up to a second (half a second on average).

No baseline run: the target is absolute.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import TopicPartition

from bench._gateway import Gateway, owns_partitions, put_instances
from bench._instances import RESOURCES, instance_body
from bench._kafka import OffsetWatch, create_topics, read_committed, scratch_prefix, watching
from bench._procs import Child, CpuMeter, answers, free_port, load_average, running, until
from bench._report import Check, Result
from gateway.events import ChangeEvent
from gateway.sim import ENTITY_SETS

TARGET_P99_MS = 50.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyConfig:
    rate: float = 500.0  # changes per second
    warmup_seconds: float = 10.0
    measure_seconds: float = 30.0
    refresh_seconds: float = 1.0
    topic_partitions: int = 3
    sample_interval: float = 0.005
    gateway_settings: tuple[tuple[str, str], ...] = ()  # GATEWAY_* overrides, for diagnostic runs only
    split: bool = False  # pollers and deliverer in two processes (roles poller, deliverer), not one (all)
    state_partitions: int = 12  # the deployment default; the smoke test uses fewer


async def run(config: LatencyConfig, *, bootstrap: str, log_dir: Path) -> Result:
    async with scratch_prefix(bootstrap) as prefix:
        return await _run(config, bootstrap=bootstrap, log_dir=log_dir, prefix=prefix)


async def _run(config: LatencyConfig, *, bootstrap: str, log_dir: Path, prefix: str) -> Result:
    load = load_average()
    partitions = config.topic_partitions
    sim_port, receiver_port = free_port(), free_port()
    sim_url, receiver_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{receiver_port}"
    topics = [f"{prefix}.crm.{resource}" for resource in RESOURCES]
    await create_topics(bootstrap, topics, partitions=partitions)
    simulator = Child(
        "latency-simulator",
        ["-m", "gateway.cli", "simulate", "dynamics", "--port", str(sim_port), "--records", "100"],
        log_dir=log_dir,
    )
    receiver = Child(
        "latency-receiver", ["-m", "bench._receiver", "--port", str(receiver_port)], log_dir=log_dir
    )
    settings = {
        "GATEWAY_TOPIC_PARTITIONS": str(partitions),
        "GATEWAY_STATE_PARTITIONS": str(config.state_partitions),
        "GATEWAY_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8",
        **dict(config.gateway_settings),
    }
    role = "poller" if config.split else "all"
    gateway = Gateway(
        "latency-gateway", log_dir=log_dir, bootstrap=bootstrap, prefix=prefix, role=role, settings=settings
    )
    deliverer = Gateway(
        "latency-deliverer",
        log_dir=log_dir,
        bootstrap=bootstrap,
        prefix=prefix,
        role="deliverer",
        settings=settings,
    )
    watch = OffsetWatch(
        bootstrap, [TopicPartition(t, p) for t in topics for p in range(partitions)], config.sample_interval
    )
    instance_id = f"latency-{prefix}"
    body = instance_body(
        instance_id, sim_url, refresh_seconds=config.refresh_seconds, callback_url=f"{receiver_url}/hooks"
    )
    async with (
        running(simulator, answers(f"{sim_url}/_sim/tables")),
        running(receiver, answers(f"{receiver_url}/_stats")),
        running(gateway, owns_partitions(gateway, config.state_partitions)),
        running(deliverer, answers(f"{deliverer.metrics_url}/healthz"))
        if config.split
        else contextlib.nullcontext(deliverer),
        watching(watch),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        await put_instances(bootstrap, prefix, [body], state_partitions=config.state_partitions)
        await _settle(gateway, within=60)  # every resource has read its change-tracking baseline
        generator = {"rate": config.rate, "tables": list(ENTITY_SETS)}
        async with http.post(f"{sim_url}/_sim/generator", json=generator) as response:
            response.raise_for_status()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(config.warmup_seconds)
        window_start = loop.time(), time.time()
        pids = {"gateway": gateway.pid, "simulator": simulator.pid, "receiver": receiver.pid}
        cpu = CpuMeter({**pids, "deliverer": deliverer.pid} if config.split else pids)
        await asyncio.sleep(config.measure_seconds)
        window = (window_start[1], time.time())
        cpu_seconds = cpu.seconds()
        async with http.delete(f"{sim_url}/_sim/generator") as response:
            generated = (await response.json())["changes"]
        # Let what was generated reach the receiver, then read every event back.
        published = await _drain(gateway, receiver_url, settle=config.refresh_seconds * 1.1 + 1.0, within=60)
        async with http.get(f"{receiver_url}/_hits") as response:
            hits = await response.json()
    records = [r for topic in topics for r in await read_committed(bootstrap, topic, expect=0, within=2)]
    result = _result(config, watch, records, hits, window, published, generated, cpu_seconds, load)
    (log_dir / "latency-samples.json").write_bytes(orjson.dumps(result.details.pop("samples")))
    return result


async def _settle(gateway: Gateway, *, within: float) -> None:
    async def polled() -> bool:
        return (await gateway.metrics()).total("gateway_polls_total", outcome="ok") >= len(RESOURCES)

    await until(polled, every=0.2, within=within, what="every resource's first poll")


async def _drain(gateway: Gateway, receiver_url: str, *, settle: float, within: float) -> float:
    """Wait until the polls stop finding changes and the receiver has every event; the events published."""
    published, received, previous = 0.0, 0, -1.0
    try:
        async with asyncio.timeout(within), aiohttp.ClientSession() as http:
            while True:
                await asyncio.sleep(settle)  # longer than a refresh interval and its jitter
                published = (await gateway.metrics()).total("gateway_events_published_total")
                async with http.get(f"{receiver_url}/_stats") as response:
                    received = (await response.json())["count"]
                if published == previous and received >= published:
                    return published
                previous = published
    except TimeoutError:
        (gateway.log.parent / f"{gateway.name}.metrics").write_text(await gateway.metrics_text())
        raise TimeoutError(
            f"after {within} s, {published} events published and {received} webhooks received"
        ) from None


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _result(
    config: LatencyConfig,
    watch: OffsetWatch,
    records: list[Any],
    hits: dict[str, list[Any]],
    window: tuple[float, float],
    published: float,
    generated: int,
    cpu_seconds: dict[str, float],
    load: list[float],
) -> Result:
    # Two changes of a row within one second share their event id (the version is the whole-second
    # modifiedon): the k-th event of an id, in offset order, goes with its k-th receipt.
    receipts: dict[str, list[float]] = {}
    for event_id, at in zip(hits["ids"], hits["times"], strict=True):
        receipts.setdefault(event_id, []).append(at)
    for times in receipts.values():
        times.reverse()
    records = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    # When each partition's offsets became readable: (lso, not before, not after), in order.
    readable: dict[TopicPartition, list[tuple[int, float, float]]] = {}
    for not_before, answered, lso in watch.changes:
        for tp, offset in lso.items():
            steps = readable.setdefault(tp, [])
            if not steps or offset > steps[-1][0]:
                steps.append((offset, not_before, answered))
    kafka_ms: list[float] = []
    kafka_late_ms: list[float] = []
    source_ms: list[float] = []
    samples: list[tuple[str, int, int, float, float, float]] = []
    for record in records:
        event = ChangeEvent.decode(record.value or b"", record.headers)
        pending = receipts.get(event.id)
        if not pending:
            continue
        received = pending.pop()
        if not window[0] <= received < window[1]:
            continue
        offsets = readable[TopicPartition(record.topic, record.partition)]
        step = offsets[bisect.bisect_right(offsets, (record.offset, float("inf"), float("inf")))]
        kafka_ms.append((received - step[1]) * 1000)
        samples.append((record.topic, record.partition, record.offset, step[1], step[2], received))
        kafka_late_ms.append((received - step[2]) * 1000)
        if event.data["eventType"] != "DELETED" and event.time is not None:
            source_ms.append((received - datetime.fromisoformat(event.time).timestamp()) * 1000)
    if not kafka_ms:
        raise RuntimeError("no webhook was received in the measurement window")
    seconds = window[1] - window[0]
    p99 = _percentile(kafka_ms, 0.99)
    return Result(
        name="latency",
        rate=len(kafka_ms) / seconds,
        unit="webhooks/s",
        checks=[Check("p99 Kafka commit -> webhook", p99, "<=", TARGET_P99_MS, "ms")],
        details={
            "kafka_to_webhook_ms": {
                "p50": round(_percentile(kafka_ms, 0.5), 1),
                "p99": round(p99, 1),
                "max": round(max(kafka_ms), 1),
                "p50_later_bound": round(_percentile(kafka_late_ms, 0.5), 1),
                "p99_later_bound": round(_percentile(kafka_late_ms, 0.99), 1),
            },
            "source_change_to_webhook_ms": {
                "p50": round(_percentile(source_ms, 0.5), 1),
                "p99": round(_percentile(source_ms, 0.99), 1),
                "mean": round(statistics.fmean(source_ms), 1),
            },
            "samples": samples,  # (topic, partition, offset, readable after, readable before, received)
            "webhooks_in_window": len(kafka_ms),
            "event_ids_shared_by_two_changes": len(hits["ids"]) - len(set(hits["ids"])),
            "changes_generated": generated,
            "events_published": published,
            "cpu_seconds": {name: round(value, 2) for name, value in cpu_seconds.items()},
            "load_average_at_start": load,
        },
        config={
            "rate": config.rate,
            "refresh_seconds": config.refresh_seconds,
            "warmup_seconds": config.warmup_seconds,
            "measure_seconds": config.measure_seconds,
            "resources": len(RESOURCES),
            "sample_interval_ms": config.sample_interval * 1000,
            "gateway_settings": dict(config.gateway_settings),
            "processes": "poller + deliverer" if config.split else "one (role all)",
        },
        notes=[
            "one gateway process (role all: pollers and deliverer), simulator and receiver in their own",
            "Kafka figure: from the earliest moment the offset can have become readable (pessimistic)",
            "source figure: modifiedon has whole seconds, so it reads up to 1 s late",
        ],
    )
