"""The simulator of the idle-scale benchmark, in its own process, without service protection:

    python -m bench._sim_server --port N

Thousands of instances share the demo user, and Dataverse's per-user limits (6,000 requests per five
minutes) would throttle them, which is not what the benchmark measures. Every table starts empty, so
every change-tracking poll answers "no changes"; the request log is kept short.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from gateway.sim import DEMO_CLIENTS, DEMO_USERS, Limits, Simulator

_UNLIMITED = Limits(requests_per_window=10**12, window_seconds=1.0, max_concurrent=10**9)


async def _serve(port: int) -> None:
    async with Simulator(
        port=port, users=DEMO_USERS, clients=DEMO_CLIENTS, limits=_UNLIMITED, request_log_size=100
    ):
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._sim_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
