"""The ingest baseline, in its own process: a plain aiokafka producer sending pre-serialised events.

    python -m bench._produce --bootstrap HOST:PORT --topic T --count N --out RESULT.json

The events are built before the clock starts, from simulator rows of about 1 KB normalised and encoded
exactly as the gateway encodes them, so both runs send the same bytes. The producer is tuned like the
gateway's transactional one (acks=all, idempotent, zstd, 5 ms linger, 512 KiB batches) but sends
outside any transaction. Writes `{"count", "seconds", "value_bytes", "cpu_seconds"}` to RESULT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from gateway.events import EventEncoder
from gateway.sim import DataverseState
from gateway.sources.dynamics.normalise import normalise

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


def messages(count: int, *, instance_id: str = "bench-baseline") -> list[Message]:
    state = DataverseState(
        stamp_clock=lambda: datetime.now(UTC), rng=random.Random(7), entity_sets=["accounts"]
    )
    state.bulk_load("accounts", count)
    encoder = EventEncoder(
        instance_id=instance_id,
        instance_name=f"bench-{instance_id}",
        element_key="dynamicscrmadfs",
        tags=("bench",),
        hub="crm",
        object_type="accounts",
    )
    built: list[Message] = []
    for row in state.table("accounts").rows.values():
        record = normalise(row, "accountid")
        attributes = record["attributes"]
        built.append(
            encoder.encode(
                object_id=str(record["id"]),
                event_type="UPDATED",
                time_ms=attributes["modifiedon"],
                version=str(attributes["modifiedon"]),
                raw=record,
                snapshot=True,
            )
        )
    return built


async def produce(bootstrap: str, topic: str, batch: list[Message]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="zstd",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata before the clock starts, as the gateway has it
        started = time.perf_counter()
        futures = [
            await producer.send(topic, key=key, value=value, headers=headers) for key, value, headers in batch
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._produce")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    batch = messages(args.count)
    cpu_before = _cpu_seconds()
    seconds = asyncio.run(produce(args.bootstrap, args.topic, batch))
    result = {
        "count": len(batch),
        "seconds": seconds,
        "value_bytes": sum(len(m[1]) for m in batch),
        "cpu_seconds": _cpu_seconds() - cpu_before,  # producer start and stop included
    }
    args.out.write_bytes(orjson.dumps(result))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
