"""The delivery baseline, in its own process: a plain aiohttp client POSTing pre-rendered webhook bodies.

    python -m bench._post --url URL --bodies FILE --concurrency C --out RESULT.json

FILE holds the bodies, each prefixed by its length (4 bytes, big-endian). `C` requests are in flight at
once over one session, as the deliverer has at most `delivery_host_concurrency` requests in flight to
one callback host. Writes `{"count", "seconds", "failed", "cpu_seconds"}` to RESULT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import struct
import time
from pathlib import Path

import aiohttp
import orjson

_HEADERS = {"Content-Type": "application/json"}


def read_bodies(path: Path) -> list[bytes]:
    data = path.read_bytes()
    bodies, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        bodies.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return bodies


def write_bodies(path: Path, bodies: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(body)) + body for body in bodies))


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    failed = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as http:

        async def worker() -> None:
            nonlocal failed, next_index
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                async with http.post(url, data=body, headers=_HEADERS) as response:
                    await response.read()
                    if response.status != 200:
                        failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, failed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._post")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bodies = read_bodies(args.bodies)
    cpu_before = _cpu_seconds()
    seconds, failed = asyncio.run(post_all(args.url, bodies, args.concurrency))
    cpu = _cpu_seconds() - cpu_before
    args.out.write_bytes(
        orjson.dumps({"count": len(bodies), "seconds": seconds, "failed": failed, "cpu_seconds": cpu})
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
