"""The demo's sample receiver: what a team receiving the gateway's webhooks writes, with the standard
library alone. It checks both signatures and prints a line per webhook and a summary every few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from aiohttp import web

_TIMESTAMP_TOLERANCE_SECONDS = 300  # as the Standard Webhooks reference libraries


def elements_signature_ok(key: str, body: bytes, header: str) -> bool:
    """Cloud Elements: `sha256=` + base64 of HMAC-SHA256 over the raw body, keyed with the key's bytes."""
    expected = "sha256=" + base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, header)


def standard_signature_ok(key: str, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """Standard Webhooks: any `v1,` signature over `id.timestamp.body`, the timestamp recent enough."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > _TIMESTAMP_TOLERANCE_SECONDS:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split())


@dataclass(slots=True)
class Tally:
    received: int = 0
    verified: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    seen_ids: set[str] = field(default_factory=set)

    def summary(self) -> str:
        types = ", ".join(f"{name} {count}" for name, count in sorted(self.by_type.items()))
        return (
            f"-- webhooks: {self.received} received, {self.verified} verified, {self.rejected} rejected, "
            f"{self.duplicates} duplicates ({types})"
        )


@asynccontextmanager
async def sample_receiver(*, host: str, port: int, key: str) -> AsyncIterator[Tally]:
    tally = Tally()

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        msg_id = headers.get("webhook-id", "")
        elements_ok = elements_signature_ok(key, body, headers.get("Elements-Webhook-Signature", ""))
        standard_ok = standard_signature_ok(
            key, msg_id, headers.get("webhook-timestamp", ""), body, headers.get("webhook-signature", "")
        )
        tally.received += 1
        if not (elements_ok and standard_ok):
            tally.rejected += 1
            print(f"  webhook REJECTED {msg_id}: elements signature {elements_ok}, standard {standard_ok}")
            return web.Response(status=401)
        tally.verified += 1
        if msg_id in tally.seen_ids:
            tally.duplicates += 1
        tally.seen_ids.add(msg_id)
        (event,) = orjson.loads(body)["message"]["events"]
        tally.by_type[event["eventType"]] += 1
        print(
            f"  webhook  {event['eventType']:<8} {event['objectType']:<14} {event['objectId']}  signatures ok"
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield tally
    finally:
        await runner.cleanup()


async def print_summaries(tally: Tally, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        print(tally.summary())
