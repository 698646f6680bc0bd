"""Benchmark 2, delivery: N change events already in Kafka, delivered as signed webhooks by the gateway's
deliverer (`event-gateway run --role deliverer`) to a receiver that verifies nothing, in webhooks/s from
the first webhook received until the deliverer's committed offsets cover every event.

Processes: the receiver (`bench._receiver`), the gateway and the baseline client each run in their own
process; the benchmark process loads the events beforehand and then only watches the group's offsets.

Baseline: `bench._post`, a plain aiohttp client POSTing the same bodies (rendered as the deliverer
renders them, unsigned) to the same receiver with as many requests in flight as the deliverer may have
for one callback host (`delivery_host_concurrency`), without Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench._gateway import Gateway, put_instances
from bench._instances import instance_body
from bench._kafka import create_topics, scratch_prefix
from bench._post import write_bodies
from bench._procs import (
    Child,
    CpuMeter,
    answers,
    broker_pid,
    free_port,
    load_average,
    run_to_end,
    running,
    until,
)
from bench._produce import messages
from bench._profiler import Profile
from bench._report import Check, Result
from gateway.delivery import render_body
from gateway.events import ChangeEvent
from gateway.kafka.topics import TopicAdmin
from gateway.settings import Settings

TARGET_RATE = 3_000.0
TARGET_RATIO = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    events: int = 50_000
    topic_partitions: int = 3
    max_seconds: float = 300.0
    state_partitions: int = 12  # the deployment default; the smoke test uses fewer
    gateway_settings: tuple[tuple[str, str], ...] = ()  # GATEWAY_* overrides, for diagnostic runs only


async def run(
    config: DeliveryConfig, *, bootstrap: str, log_dir: Path, profile: Profile | None = None
) -> Result:
    async with scratch_prefix(bootstrap) as prefix:
        return await _run(config, bootstrap=bootstrap, log_dir=log_dir, prefix=prefix, profile=profile)


async def _run(
    config: DeliveryConfig, *, bootstrap: str, log_dir: Path, prefix: str, profile: Profile | None
) -> Result:
    count, partitions = config.events, config.topic_partitions
    load = load_average()
    concurrency = Settings().delivery_host_concurrency  # the default a deployment runs with
    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    instance_id = f"delivery-{prefix}"
    event_topic = f"{prefix}.crm.accounts"

    await create_topics(bootstrap, [event_topic], partitions=partitions)
    async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
        await admin.ensure(f"{prefix}-gw.instances", partitions=config.state_partitions, compacted=True)
    body = instance_body(instance_id, "http://127.0.0.1:1", callback_url=f"{receiver_url}/hooks")
    await put_instances(bootstrap, prefix, [body], state_partitions=config.state_partitions)
    batch = messages(count, instance_id=instance_id)
    await _load(bootstrap, event_topic, batch)
    bodies_file = log_dir / "delivery-bodies.bin"
    write_bodies(
        bodies_file,
        [render_body(ChangeEvent.decode(value, headers), "elements") for _key, value, headers in batch],
    )
    del batch

    receiver = Child(
        "delivery-receiver", ["-m", "bench._receiver", "--port", str(receiver_port)], log_dir=log_dir
    )
    async with running(receiver, answers(f"{receiver_url}/_stats")):

        async def baseline_run(run: int) -> dict[str, Any]:
            out = log_dir / f"delivery-baseline-{run}.json"
            meter = CpuMeter({"receiver": receiver.pid})
            await run_to_end(
                Child(
                    f"delivery-baseline-{run}",
                    [
                        "-m",
                        "bench._post",
                        "--url",
                        f"{receiver_url}/hooks",
                        "--bodies",
                        str(bodies_file),
                        "--concurrency",
                        str(concurrency),
                        "--out",
                        str(out),
                    ],
                    log_dir=log_dir,
                ),
                within=config.max_seconds,
            )
            result: dict[str, Any] = orjson.loads(out.read_bytes())
            result["receiver_cpu_seconds"] = meter.seconds()["receiver"]
            if result["failed"]:
                raise RuntimeError(f"the baseline had {result['failed']} failed requests")
            await _reset(receiver_url)
            return result

        baselines = [await baseline_run(1)]
        gateway = Gateway(
            "delivery-gateway",
            log_dir=log_dir,
            bootstrap=bootstrap,
            prefix=prefix,
            role="deliverer",
            settings={
                "GATEWAY_TOPIC_PARTITIONS": str(partitions),
                "GATEWAY_STATE_PARTITIONS": str(config.state_partitions),
                "GATEWAY_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8",
                **dict(config.gateway_settings),
            },
            python=profile.python_prefix() if profile else (sys.executable,),
        )
        async with running(gateway, answers(f"{gateway.metrics_url}/healthz")):
            async with profile.window(gateway.pid) if profile else contextlib.nullcontext():
                await _first_receipt(receiver_url, within=config.max_seconds)
                # From the first webhook on: the deliverer's start-up (joining, topics) is not counted.
                cpu = CpuMeter({"gateway": gateway.pid, "receiver": receiver.pid, **broker_pid()})
                finished = await _committed(
                    bootstrap,
                    f"{prefix}-gw-deliverer",
                    event_topic,
                    partitions,
                    count,
                    within=config.max_seconds,
                )
                cpu_seconds = cpu.seconds()
            stats = await _stats(receiver_url)
        await _reset(receiver_url)
        baselines.append(await baseline_run(2))
    if stats["distinct"] != count:
        raise RuntimeError(f"the receiver got {stats['distinct']} distinct webhooks, not {count}")
    seconds = finished - stats["first"]
    rate = count / seconds
    baseline_rates = [b["count"] / b["seconds"] for b in baselines]
    baseline_rate = statistics.fmean(baseline_rates)
    return Result(
        name="delivery",
        rate=rate,
        unit="webhooks/s",
        baseline=baseline_rate,
        baseline_label=f"plain aiohttp client, same bodies, {concurrency} in flight, no Kafka; mean of 2",
        checks=[
            Check("webhooks/s", rate, ">=", TARGET_RATE, "webhooks/s"),
            Check("ratio to baseline", rate / baseline_rate, ">=", TARGET_RATIO, "ratio"),
        ],
        details={
            "seconds": round(seconds, 3),
            "last_receipt_to_committed_seconds": round(finished - stats["last"], 3),
            "requests_received": stats["count"],
            "baseline_rates": [round(r) for r in baseline_rates],
            "cpu_seconds": {name: round(value, 2) for name, value in cpu_seconds.items()},
            "gateway_cpu_us_per_webhook": round(
                cpu_seconds["gateway"] / count * 1e6, 1
            ),  # from first receipt
            "baseline_cpu_us_per_request": round(
                statistics.fmean(b["cpu_seconds"] for b in baselines) / count * 1e6, 1
            ),
            "load_average_at_start": load,
            "receiver_cpu_us_per_request": {
                "gateway": round(cpu_seconds["receiver"] / stats["count"] * 1e6, 1),
                "baseline": round(
                    statistics.fmean(b["receiver_cpu_seconds"] for b in baselines) / count * 1e6, 1
                ),
            },
        },
        config={
            "events": count,
            "topic_partitions": partitions,
            "host_concurrency": concurrency,
            "gateway_settings": dict(config.gateway_settings),
        },
        notes=[
            "receiver, gateway (role deliverer) and baseline client each in their own process",
            "start: the first webhook received; end: the deliverer group's committed offsets cover "
            "every event (sampled every 20 ms)",
        ],
    )


async def _load(
    bootstrap: str, topic: str, batch: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type="zstd")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v, headers=h) for k, v, h in batch]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _committed(
    bootstrap: str, group_id: str, topic: str, partitions: int, count: int, *, within: float
) -> float:
    """When the group's committed offsets of `topic` first added up to `count` (epoch seconds)."""
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="event-gateway-bench")
    await client.start()
    try:
        async with asyncio.timeout(within):
            while True:
                offsets = await client.list_consumer_group_offsets(group_id)
                answered = time.time()
                total = sum(
                    meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0
                )
                if total >= count:
                    return answered
                await asyncio.sleep(0.02)
    finally:
        await client.close()


async def _first_receipt(url: str, *, within: float) -> None:
    async def received() -> bool:
        return bool((await _stats(url))["count"])

    await until(received, every=0.01, within=within, what="a first webhook")


async def _stats(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_stats") as response:
        return dict(await response.json())


async def _reset(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.delete(f"{url}/_stats") as response:
        response.raise_for_status()


def _json(path: Path) -> dict[str, float]:
    return dict(orjson.loads(path.read_bytes()))
