"""`python -m bench [--quick] [--only NAME,...]`: run the benchmarks against the local Kafka, print the
table, and merge the results into `bench/results/<UTC date>.json`.

Each benchmark runs its gateway, simulator, receiver and baseline as separate processes on loopback;
`--quick` shrinks sizes and windows (the idle benchmark then polls every 10 s instead of 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import delivery, fencing, idle, ingest, latency, profile, row_state, window
from bench._profiler import Kind
from bench._report import Result, table, write

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = ("ingest", "window", "row-state", "delivery", "latency", "idle", "fencing", "profile")


def _runners(quick: bool, profiler: Kind | None) -> dict[str, Callable[[str, Path], Awaitable[Result]]]:
    ingest_config = ingest.IngestConfig(records=50_000 if quick else 200_000)
    window_config = window.WindowConfig(records=20_000 if quick else 100_000)
    delivery_config = delivery.DeliveryConfig(events=10_000 if quick else 50_000)
    latency_config = latency.LatencyConfig(
        warmup_seconds=5.0 if quick else 10.0, measure_seconds=10.0 if quick else 30.0
    )
    idle_config = (
        idle.IdleConfig(windows=(30.0, 40.0, 30.0), refresh_seconds=10.0) if quick else idle.IdleConfig()
    )
    fencing_config = fencing.FencingConfig(rounds=50 if quick else 200)
    profile_config = profile.ProfileConfig(ingest=ingest_config, delivery=delivery_config, kind=profiler)
    return {
        "ingest": lambda bootstrap, logs: ingest.run(ingest_config, bootstrap=bootstrap, log_dir=logs),
        "window": lambda bootstrap, logs: window.run(window_config, bootstrap=bootstrap, log_dir=logs),
        "row-state": lambda bootstrap, logs: row_state.run(ingest_config, bootstrap=bootstrap, log_dir=logs),
        "delivery": lambda bootstrap, logs: delivery.run(delivery_config, bootstrap=bootstrap, log_dir=logs),
        "latency": lambda bootstrap, logs: latency.run(latency_config, bootstrap=bootstrap, log_dir=logs),
        "idle": lambda bootstrap, logs: idle.run(idle_config, bootstrap=bootstrap, log_dir=logs),
        "fencing": lambda bootstrap, logs: fencing.run(fencing_config, bootstrap=bootstrap, log_dir=logs),
        "profile": lambda bootstrap, logs: profile.run(profile_config, bootstrap=bootstrap, log_dir=logs),
    }


async def _main(args: argparse.Namespace) -> list[Result]:
    bootstrap = os.environ.get("GATEWAY_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    log_dir = Path(tempfile.mkdtemp(prefix="event-gateway-bench-"))
    print(f"logs of the child processes: {log_dir}", file=sys.stderr)
    runners = _runners(args.quick, args.profiler)
    results: list[Result] = []
    for name in args.only:
        print(f"running {name} ...", file=sys.stderr)
        results.append(await runners[name](bootstrap, log_dir))
        print(table(results[-1:]), file=sys.stderr)
    return results


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    return names


def main() -> int:
    # aiokafka logs the transient leader moves of topics the benchmarks just created at ERROR.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter windows")
    parser.add_argument("--only", type=_names, default=list(BENCHMARKS), help="comma-separated benchmarks")
    parser.add_argument("--profiler", choices=["py-spy", "cprofile"], help="default: py-spy when installed")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where <date>.json is written")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    results = asyncio.run(_main(args))
    print(table(results))
    if not args.no_write:
        print(f"written to {write(results, args.results, quick=args.quick)}")
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
