"""What fencing deliverers by a transactional id per partition costs (gateway/delivery/fencing.py),
against the single transactional producer per replica it replaced.

- Starting the producers of `partitions` partitions side by side, as a rebalance listener does, and
  the memory each one takes (this process's resident memory before and after).
- Commit rounds per second when every partition has progress: the rate is one offsets-only
  transaction per partition, side by side, as the committer does now; the baseline is one
  transaction committing every partition's offset, as the replica's producer did.

In this process, against the broker: the cost is in the broker round trips, not in our code.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from bench._kafka import create_topics, scratch_prefix
from bench._procs import usage
from bench._report import Check, Result
from gateway.delivery.fencing import PartitionWriters
from gateway.delivery.outputs import write_outputs
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import KafkaMetrics

# A rebalance listener that runs longer than this misses a heartbeat (aiokafka's default interval).
_HEARTBEAT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class FencingConfig:
    partitions: int = 24
    rounds: int = 200
    max_seconds: float = 60.0  # per scheme


async def _rounds(config: FencingConfig, commit: Callable[[int], Awaitable[object]]) -> float:
    """Commit rounds per second: `config.rounds` of them, or as many as `max_seconds` allows."""
    started = time.perf_counter()
    done = 0
    while done < config.rounds and time.perf_counter() - started < config.max_seconds:
        done += 1
        await commit(done)
    return done / (time.perf_counter() - started)


async def run(config: FencingConfig, *, bootstrap: str, log_dir: Path) -> Result:
    metrics = KafkaMetrics(CollectorRegistry())
    async with scratch_prefix(bootstrap) as prefix:
        topic, group = f"{prefix}.crm.accounts", f"{prefix}-deliverer"
        await create_topics(bootstrap, [topic], partitions=config.partitions)
        tps = [TopicPartition(topic, p) for p in range(config.partitions)]

        rss_before = usage(os.getpid()).rss_bytes
        started = time.perf_counter()
        async with PartitionWriters(bootstrap_servers=bootstrap, group_id=group, metrics=metrics) as writers:
            held = dict(zip(tps, await asyncio.gather(*(writers.take(tp) for tp in tps)), strict=True))
            start_seconds = time.perf_counter() - started
            rss_per_producer = (usage(os.getpid()).rss_bytes - rss_before) / config.partitions

            async def per_partition(n: int) -> None:
                await asyncio.gather(
                    *(
                        write_outputs(writer, [], offsets={tp: n}, group_id=group)
                        for tp, writer in held.items()
                    )
                )

            fenced = await _rounds(config, per_partition)

        async with TransactionalWriter(
            bootstrap_servers=bootstrap, transactional_id=f"{group}-replica", metrics=metrics
        ) as writer:

            async def one_for_all(n: int) -> None:
                await write_outputs(writer, [], offsets=dict.fromkeys(tps, n), group_id=group)

            single = await _rounds(config, one_for_all)

    return Result(
        name="fencing",
        rate=fenced,
        unit="commit rounds/s",
        baseline=single,
        baseline_label="one transaction for all partitions",
        checks=[
            Check(
                f"start of {config.partitions} partition producers",
                start_seconds,
                "<=",
                _HEARTBEAT_SECONDS,
                "s",
            )
        ],
        details={
            "producer_start_seconds": round(start_seconds, 3),
            "rss_per_producer_kib": round(rss_per_producer / 1024, 1),
            "transactions_per_second": round(fenced * config.partitions, 1),
        },
        config=asdict(config),
        notes=[
            f"{config.partitions} partitions, each with progress in every round: the committer's worst case;"
            " a round commits only the partitions that finished something"
        ],
    )
