"""Benchmark 1, ingest: one change-tracking poll of N changed rows of about 1 KB, through the gateway's
real path (paging, normalising, classifying, CloudEvents, one transactional produce), in events/s from the
poll's start until a read_committed reader can see every event.

Processes: the simulator (`event-gateway simulate`), the gateway (`event-gateway run --role poller`) and
the baseline producer each run in their own process, so none of their CPU counts against another; the
benchmark process only watches the topic's last stable offsets.

Baseline: `bench._produce`, a plain aiokafka producer sending the same encoded events (built before its
clock starts) to a topic with the same settings, outside a transaction; run before and after the gateway,
and averaged, so that a change in the machine's load shows as a spread instead of a skewed ratio.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench._gateway import Gateway, owns_partitions, put_instances
from bench._instances import instance_body
from bench._kafka import OffsetWatch, count_committed, create_topics, scratch_prefix, watching
from bench._procs import Child, CpuMeter, answers, broker_pid, free_port, load_average, run_to_end, running
from bench._profiler import Profile
from bench._report import Check, Result

TARGET_RATE = 20_000.0
TARGET_RATIO = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestConfig:
    records: int = 200_000
    topic_partitions: int = 3
    page_size: int = 5000
    max_seconds: float = 300.0  # bound on the poll, and on each baseline
    state_partitions: int = 12  # the deployment default; the smoke test uses fewer
    row_state: bool = True  # GATEWAY_ROW_STATE: the row-state benchmark compares both


async def run(
    config: IngestConfig, *, bootstrap: str, log_dir: Path, profile: Profile | None = None
) -> Result:
    async with scratch_prefix(bootstrap) as prefix:
        return await _run(config, bootstrap=bootstrap, log_dir=log_dir, prefix=prefix, profile=profile)


async def produce_baseline(
    config: IngestConfig, *, bootstrap: str, log_dir: Path, topic: str, run: int
) -> dict[str, Any]:
    out = log_dir / f"ingest-baseline-{run}.json"
    await run_to_end(
        Child(
            f"ingest-baseline-{run}",
            [
                "-m",
                "bench._produce",
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--count",
                str(config.records),
                "--out",
                str(out),
            ],
            log_dir=log_dir,
        ),
        within=config.max_seconds + 120,
    )
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


async def _run(
    config: IngestConfig, *, bootstrap: str, log_dir: Path, prefix: str, profile: Profile | None
) -> Result:
    count, partitions = config.records, config.topic_partitions
    load = load_average()
    event_topic, baseline_topics = f"{prefix}.crm.accounts", [f"{prefix}.baseline-1", f"{prefix}.baseline-2"]
    await create_topics(bootstrap, [event_topic, *baseline_topics], partitions=partitions)
    baselines = [
        await produce_baseline(config, bootstrap=bootstrap, log_dir=log_dir, topic=baseline_topics[0], run=1)
    ]

    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = Child(
        "ingest-simulator",
        ["-m", "gateway.cli", "simulate", "dynamics", "--port", str(sim_port), "--records", "0"],
        log_dir=log_dir,
    )
    gateway = Gateway(
        "ingest-gateway",
        log_dir=log_dir,
        bootstrap=bootstrap,
        prefix=prefix,
        settings={
            "GATEWAY_TOPIC_PARTITIONS": str(partitions),
            "GATEWAY_STATE_PARTITIONS": str(config.state_partitions),
            "GATEWAY_ROW_STATE": "true" if config.row_state else "false",
        },
        python=profile.python_prefix() if profile else (sys.executable,),
    )
    async with running(simulator, answers(f"{sim_url}/_sim/tables")):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http,
            http.post(f"{sim_url}/_sim/tables/accounts/bulk", json={"count": count}) as response,
        ):
            loaded = await response.json()
        if loaded.get("count") != count:
            raise RuntimeError(f"the simulator holds {loaded} rows, not {count}")
        async with running(gateway, owns_partitions(gateway, config.state_partitions)):
            watch = OffsetWatch.of_topic(bootstrap, event_topic, partitions, interval=0.02)
            instance_id = f"ingest-{prefix}"
            body = instance_body(
                instance_id,
                sim_url,
                resources=("accounts",),
                refresh_seconds=3600,
                snapshot=True,
                page_size=config.page_size,
            )
            async with watching(watch), profile.window(gateway.pid) if profile else contextlib.nullcontext():
                cpu = CpuMeter({"gateway": gateway.pid, "simulator": simulator.pid, **broker_pid()})
                await put_instances(bootstrap, prefix, [body], state_partitions=config.state_partitions)
                # One poll is one transaction: its commit adds one marker to each partition.
                finished = await watch.wait_for(
                    lambda lso: sum(lso.values()) >= count + partitions, within=config.max_seconds
                )
                cpu_seconds = cpu.seconds()
            started = min(
                t
                for t, entry in gateway.log_times("polling started")
                if entry.get("instance_id") == instance_id
            )
            metrics = await gateway.metrics()
    baselines.append(
        await produce_baseline(config, bootstrap=bootstrap, log_dir=log_dir, topic=baseline_topics[1], run=2)
    )
    seen, distinct = await count_committed(bootstrap, event_topic, expect=count, within=120)
    if seen != count or distinct != count:
        raise RuntimeError(f"read back {seen} events with {distinct} distinct keys, not {count}")
    seconds = finished - started
    rate = count / seconds
    baseline_rates = [b["count"] / b["seconds"] for b in baselines]
    baseline_rate = statistics.fmean(baseline_rates)
    baseline_cpu = statistics.fmean(b["cpu_seconds"] for b in baselines)
    return Result(
        name="ingest",
        rate=rate,
        unit="events/s",
        baseline=baseline_rate,
        baseline_label="plain aiokafka producer, same encoded events, no transaction (mean of 2 runs)",
        checks=[
            Check("events/s", rate, ">=", TARGET_RATE, "events/s"),
            Check("ratio to baseline", rate / baseline_rate, ">=", TARGET_RATIO, "ratio"),
        ],
        details={
            "seconds": round(seconds, 3),
            "gateway_poll_seconds": round(
                metrics.total("gateway_poll_duration_seconds_sum", resource="accounts"), 3
            ),
            "baseline_rates": [round(r) for r in baseline_rates],
            "cpu_seconds": {name: round(value, 2) for name, value in cpu_seconds.items()},
            "gateway_cpu_us_per_event": round(cpu_seconds["gateway"] / count * 1e6, 2),
            "baseline_cpu_us_per_event": round(baseline_cpu / count * 1e6, 2),
            "event_bytes_mean": round(baselines[0]["value_bytes"] / count),
            "committed_events_read": seen,
            "distinct_keys_read": distinct,
            "events_published_metric": metrics.total("gateway_events_published_total"),
            "load_average_at_start": load,
        },
        config={"records": count, "topic_partitions": partitions, "page_size": config.page_size},
        notes=[
            "simulator, gateway and baseline producer each in their own process",
            "start: the gateway's 'polling started' log line; end: the topic's last stable offsets cover "
            "every event and the commit marker (sampled every 20 ms)",
        ],
    )
