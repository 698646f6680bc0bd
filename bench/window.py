"""Benchmark 6, window: a bulk import in filter mode (issue 14). N rows of about 1 KB share one `modifiedon`
second, inside the overlap window: one poll publishes all of them, with a checkpoint whose seen-set holds
all N pairs, and the next poll reads all N again and must skip each one by that seen-set.

Figure: events/s of the publishing poll, from its start (the gateway's 'polling started' log line) until
a read_committed reader can see every event. Baseline: the ingest one, a plain aiokafka producer sending
the same number of encoded events outside a transaction, run before and after the gateway and averaged.
Details: the skipping poll's seconds (the gateway's poll duration histogram), and the checkpoint's
records and bytes as the checkpoints topic holds them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._gateway import Gateway, owns_partitions, put_instances
from bench._instances import instance_body
from bench._kafka import OffsetWatch, count_committed, create_topics, scratch_prefix, watching
from bench._procs import Child, answers, free_port, load_average, running, until
from bench._report import Check, Result
from bench.ingest import IngestConfig, produce_baseline
from gateway.kafka.compacted import read_table
from gateway.polling.stored import load_checkpoints

TARGET_RATIO = 0.4
TARGET_RECORD_BYTES = 1_000_000  # each checkpoint record under the broker's 1 MB message limit
_REFRESH_SECONDS = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    records: int = 100_000
    topic_partitions: int = 3
    page_size: int = 5000
    max_seconds: float = 300.0  # bound on each poll, and on each baseline
    state_partitions: int = 12


async def run(config: WindowConfig, *, bootstrap: str, log_dir: Path) -> Result:
    async with scratch_prefix(bootstrap) as prefix:
        return await _run(config, bootstrap=bootstrap, log_dir=log_dir, prefix=prefix)


async def _run(config: WindowConfig, *, bootstrap: str, log_dir: Path, prefix: str) -> Result:
    count, partitions = config.records, config.topic_partitions
    load = load_average()
    event_topic, baseline_topics = f"{prefix}.crm.accounts", [f"{prefix}.baseline-1", f"{prefix}.baseline-2"]
    await create_topics(bootstrap, [event_topic, *baseline_topics], partitions=partitions)
    produce = IngestConfig(records=count, max_seconds=config.max_seconds)
    baselines = [
        await produce_baseline(produce, bootstrap=bootstrap, log_dir=log_dir, topic=baseline_topics[0], run=1)
    ]
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = Child(
        "window-simulator",
        ["-m", "gateway.cli", "simulate", "dynamics", "--port", str(sim_port), "--records", "0"],
        log_dir=log_dir,
    )
    gateway = Gateway(
        "window-gateway",
        log_dir=log_dir,
        bootstrap=bootstrap,
        prefix=prefix,
        settings={
            "GATEWAY_TOPIC_PARTITIONS": str(partitions),
            "GATEWAY_STATE_PARTITIONS": str(config.state_partitions),
        },
    )
    async with (
        running(simulator, answers(f"{sim_url}/_sim/tables")),
        running(gateway, owns_partitions(gateway, config.state_partitions)),
    ):
        # Loaded just before the instance starts: the rows' second is inside its first window.
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http,
            http.post(
                f"{sim_url}/_sim/tables/accounts/bulk", json={"count": count, "withinSeconds": 0}
            ) as response,
        ):
            loaded = await response.json()
        if loaded.get("count") != count:
            raise RuntimeError(f"the simulator holds {loaded} rows, not {count}")
        watch = OffsetWatch.of_topic(bootstrap, event_topic, partitions, interval=0.02)
        instance_id = f"window-{prefix}"
        body = instance_body(
            instance_id,
            sim_url,
            resources=("accounts",),
            refresh_seconds=_REFRESH_SECONDS,
            page_size=config.page_size,
            filtered=True,
        )
        async with watching(watch):
            await put_instances(bootstrap, prefix, [body], state_partitions=config.state_partitions)
            finished = await watch.wait_for(
                lambda lso: sum(lso.values()) >= count + partitions, within=config.max_seconds
            )

        async def polls_ok(at_least: int) -> bool:
            return (await gateway.metrics()).total("gateway_polls_total", outcome="ok") >= at_least

        await until(lambda: polls_ok(1), every=0.05, within=30, what="the publishing poll counted")
        first = await gateway.metrics()
        await until(
            lambda: polls_ok(2), every=0.1, within=config.max_seconds, what="a second poll of the window"
        )
        second = await gateway.metrics()
        started = min(
            t for t, entry in gateway.log_times("polling started") if entry.get("instance_id") == instance_id
        )
    baselines.append(
        await produce_baseline(produce, bootstrap=bootstrap, log_dir=log_dir, topic=baseline_topics[1], run=2)
    )
    seen, distinct = await count_committed(bootstrap, event_topic, expect=count, within=120)
    if seen != count or distinct != count:
        raise RuntimeError(f"read back {seen} events with {distinct} distinct keys, not {count}")
    table = await read_table(bootstrap, f"{prefix}-gw.checkpoints", range(config.state_partitions))
    (checkpoint,) = load_checkpoints(table).values()
    if len(checkpoint.seen) != count:
        raise RuntimeError(f"the checkpoint holds {len(checkpoint.seen)} seen pairs, not {count}")
    record_bytes = [len(key) + len(value) for key, value in table.items()]
    duration = "gateway_poll_duration_seconds_sum"
    skipping_seconds = second.total(duration, resource="accounts") - first.total(
        duration, resource="accounts"
    )
    seconds = finished - started
    rate = count / seconds
    baseline_rates = [b["count"] / b["seconds"] for b in baselines]
    baseline_rate = statistics.fmean(baseline_rates)
    return Result(
        name="window",
        rate=rate,
        unit="events/s",
        baseline=baseline_rate,
        baseline_label="plain aiokafka producer, as many encoded events, no transaction (mean of 2 runs)",
        checks=[
            Check("ratio to baseline", rate / baseline_rate, ">=", TARGET_RATIO, "ratio"),
            Check("largest checkpoint record", max(record_bytes), "<=", TARGET_RECORD_BYTES, "bytes"),
        ],
        details={
            "seconds": round(seconds, 3),
            "skipping_poll_seconds": round(skipping_seconds, 3),
            "skipped_rows_per_second": round(count / skipping_seconds) if skipping_seconds > 0 else None,
            "checkpoint_records": len(record_bytes),
            "checkpoint_bytes": sum(record_bytes),
            "checkpoint_largest_record_bytes": max(record_bytes),
            "baseline_rates": [round(r) for r in baseline_rates],
            "committed_events_read": seen,
            "events_published_metric": second.total("gateway_events_published_total"),
            "load_average_at_start": load,
        },
        config={"records": count, "topic_partitions": partitions, "page_size": config.page_size},
        notes=[
            "filter mode; every row stamped in the same modifiedon second, inside the overlap window",
            "start: the gateway's 'polling started' log line; end: the topic's last stable offsets cover "
            "every event and the commit marker (sampled every 20 ms)",
        ],
    )
