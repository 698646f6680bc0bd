"""The `event-gateway` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from gateway.errors import ConfigError, ProblemsError, PublishError
from gateway.logs import configure_logging
from gateway.reencrypt import reencrypt_instances
from gateway.runtime import ROLES, Role, run_until_stopped
from gateway.settings import Settings, load_settings

# A deliverer holds up to GATEWAY_DELIVERY_MAX_PENDING decoded events, which outlive young collections;
# at CPython's default first threshold (700 allocations) collecting them again and again cost a fifth of
# the CPU per webhook (bench/PROFILE.md). Collections stay, less often; what start-up made is frozen.
_GC_THRESHOLDS = (50_000, 20, 100)


def _tune_garbage_collector() -> None:
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="event-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gateway (settings come from GATEWAY_* variables)")
    run.add_argument(
        "--role",
        choices=ROLES,
        default="all",
        help=(
            "what this process does: poller (poll the CRMs into Kafka), deliverer (send the webhooks), "
            "api (the admin API only), or all three (default: all); each role scales out by replicas"
        ),
    )
    run.add_argument("--instances", type=Path, help="a JSON/YAML file or directory of declared instances")

    commands.add_parser(
        "reencrypt",
        help=(
            "rewrite every stored instance whose secrets are in plaintext or encrypted with a key of"
            " GATEWAY_SECRET_KEY_PREVIOUS, with GATEWAY_SECRET_KEY; run it while no one edits instances"
        ),
    )

    simulate = commands.add_parser("simulate", help="run a simulator of a CRM API")
    simulate.add_argument("element", choices=["dynamics"])
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8090)
    simulate.add_argument("--records", type=int, default=100, help="records per table at start")
    simulate.add_argument("--change-rate", type=float, default=0.0, help="generated changes per second")
    return parser


async def _run(settings: Settings, role: Role, instances: Path | None) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run_until_stopped(settings, role=role, instances_path=instances, stop=stop)


def _print_problems(what: str, error: ProblemsError) -> None:
    print(f"event-gateway: {what}:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def _reencrypt(settings: Settings) -> int:
    configure_logging(settings.log_level, role="reencrypt")
    try:
        done = asyncio.run(reencrypt_instances(settings))
    except ConfigError as exc:
        print(f"event-gateway: {exc}", file=sys.stderr)
        return 2
    except PublishError as exc:
        print(f"event-gateway: {exc}", file=sys.stderr)
        return 1
    print(f"re-encrypted {len(done.rewritten)} of {done.stored} stored instances with GATEWAY_SECRET_KEY")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        from gateway.sim import run_simulator

        configure_logging("INFO", role="simulator")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                run_simulator(args.host, args.port, seed_records=args.records, change_rate=args.change_rate)
            )
        return 0
    try:
        settings = load_settings()
    except ProblemsError as exc:
        _print_problems("invalid settings", exc)
        return 2
    if args.command == "reencrypt":
        return _reencrypt(settings)
    configure_logging(settings.log_level, role=args.role)
    _tune_garbage_collector()
    try:
        # uvloop: 11 % less CPU per webhook than asyncio's own loop, measured (bench/PROFILE.md).
        stopped_cleanly = uvloop.run(_run(settings, args.role, args.instances))
    except ProblemsError as exc:
        _print_problems("invalid declared instances", exc)
        return 2
    except ConfigError as exc:
        print(f"event-gateway: {exc}", file=sys.stderr)
        return 2
    return 0 if stopped_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
