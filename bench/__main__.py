"""`python -m bench [--quick] [--only NAME,...]`: run the benchmarks, print the table, write the results."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bench import delivery, idle, ingest, latency
from bench._report import Result, table, write

RESULTS = Path(__file__).resolve().parent / "results"


async def _main(args: argparse.Namespace) -> list[Result]:
    bootstrap = os.environ.get("GATEWAY_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    log_dir = Path(tempfile.mkdtemp(prefix="event-gateway-bench-"))
    print(f"logs of the child processes: {log_dir}", file=sys.stderr)
    results: list[Result] = []
    if "ingest" in args.only:
        config = ingest.IngestConfig(records=args.ingest_records or (50_000 if args.quick else 200_000))
        results.append(await ingest.run(config, bootstrap=bootstrap, log_dir=log_dir))
        print(table(results[-1:]), file=sys.stderr)
    if "delivery" in args.only:
        delivery_config = delivery.DeliveryConfig(
            events=args.delivery_events or (10_000 if args.quick else 50_000)
        )
        results.append(await delivery.run(delivery_config, bootstrap=bootstrap, log_dir=log_dir))
        print(table(results[-1:]), file=sys.stderr)
    if "latency" in args.only:
        latency_config = latency.LatencyConfig(measure_seconds=10 if args.quick else 30)
        results.append(await latency.run(latency_config, bootstrap=bootstrap, log_dir=log_dir))
        print(table(results[-1:]), file=sys.stderr)
    if "idle" in args.only:
        idle_config = (
            idle.IdleConfig(windows=(30.0, 40.0, 30.0), refresh_seconds=10.0)
            if args.quick
            else idle.IdleConfig()
        )
        results.append(await idle.run(idle_config, bootstrap=bootstrap, log_dir=log_dir))
        print(table(results[-1:]), file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter windows")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default={"ingest"})
    parser.add_argument("--ingest-records", type=int)
    parser.add_argument("--delivery-events", type=int)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(_main(args))
    print(table(results))
    if not args.no_write:
        print(f"written to {write(results, args.results, quick=args.quick)}")
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
