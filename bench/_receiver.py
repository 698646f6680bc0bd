"""A webhook receiver for the delivery and latency benchmarks, in its own process:

    python -m bench._receiver --port N

It reads each request's body, verifies nothing and answers 200 at once. It counts requests and keeps
each one's `webhook-id` and epoch receipt time, which `GET /_stats` and `GET /_hits` report and
`DELETE /_stats` forgets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import orjson
from aiohttp import web


class _Hits:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.times: list[float] = []

    async def receive(self, request: web.Request) -> web.Response:
        await request.read()
        self.times.append(time.time())
        self.ids.append(request.headers.get("webhook-id", ""))
        return web.Response()

    async def stats(self, _request: web.Request) -> web.Response:
        times = self.times
        body = {
            "count": len(times),
            "distinct": len(set(self.ids)),
            "first": times[0] if times else None,
            "last": times[-1] if times else None,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def hits(self, _request: web.Request) -> web.Response:
        body = orjson.dumps({"ids": self.ids, "times": self.times})
        return web.Response(body=body, content_type="application/json")

    async def reset(self, _request: web.Request) -> web.Response:
        self.ids, self.times = [], []
        return web.Response(status=204)


async def _serve(port: int) -> None:
    hits = _Hits()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/_stats", hits.stats)
    app.router.add_get("/_hits", hits.hits)
    app.router.add_delete("/_stats", hits.reset)
    app.router.add_post("/{tail:.*}", hits.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._receiver")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
