"""Reliability figure "receiver chaos" (issue 12): 1,000 changes made in the simulator, polled into
Kafka and delivered by one gateway (role `all`), while the receiver answers 30 % of requests 5xx,
lets 10 % hang past the delivery timeout, and is down for 60 s: its listening socket closed, its
connections cut, then back on the same port.

Every published change must end delivered (a 2xx sent for a request whose both signatures verify)
or dead-lettered; none lost. Repeats are counted, and each must carry its event's one webhook-id
and the same body. The figures are printed (`pytest -s`) and written to
`build/reliability/receiver-chaos.json`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.delivery.dead_letters import REASONS
from gateway.runtime import RunningGateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests._events import decode
from tests.conftest import ROOT, read_committed, seed_instance, wait_for
from tests.delivery._support import KEY, Receiver, dead_letters, delivery_settings, listening, sample
from tests.polling._support import create, only, polls

CHANGES = 1000
PER_POLL = 12  # changes made per completed poll: about 85 s of changes at the 1 s interval
OUTAGE_AFTER = 150  # changes made before the receiver goes down
OUTAGE_SECONDS = 60.0
SEED = 12
FAILING = 0.30  # of requests answered 5xx
HANGING = 0.10  # of requests never answered
STATUSES = (500, 502, 503, 504)
# About 35 s of retries in all (±20 % jitter): the changes of the outage's first half run out of
# attempts and are dead-lettered, those of its second half are delivered once the receiver is back.
SCHEDULE = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
ARTEFACT = ROOT / "build" / "reliability" / "receiver-chaos.json"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return delivery_settings(
        settings,
        retry_schedule=SCHEDULE,
        delivery_timeout_seconds=1.0,
        # The breaker as operators run it: it opens on runs of failures, which 40 % failing answers
        # and the outage both bring.
        delivery_breaker_failures=5,
        delivery_breaker_cooldown_seconds=2.0,
        delivery_host_concurrency=16,
    )


def fate(webhook_id: str, attempt: int) -> int | None:
    """The status of a request, None for one left hanging: drawn from an RNG seeded by the run's
    seed, the webhook-id and the attempt, so the same request gets the same answer in any order."""
    rng = random.Random(f"{SEED}/{webhook_id}/{attempt}")
    draw = rng.random()
    if draw < FAILING:
        return rng.choice(STATUSES)
    if draw < FAILING + HANGING:
        return None
    return 200


def signed(body: bytes, headers: Mapping[str, str]) -> bool:
    """Both signatures verify, as receivers check them: Standard Webhooks and Cloud Elements."""
    try:
        Webhook(KEY.encode()).verify(body, dict(headers))
    except WebhookVerificationError:
        return False
    digest = hmac.new(KEY.encode(), body, hashlib.sha256).digest()
    return headers.get("Elements-Webhook-Signature") == "sha256=" + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # monotonic
    webhook_id: str
    status: int
    body: bytes


@dataclass
class Chaos:
    """The receiver's behaviour: answers by `fate`, and records every request's signature check
    and every answer it sent."""

    answers: list[Answer] = field(default_factory=list)
    unsigned: list[str] = field(default_factory=list)  # webhook-ids of requests that did not verify
    hung: int = 0
    _never: asyncio.Event = field(default_factory=asyncio.Event)  # hung requests end when cancelled

    async def answer(self, attempt: int, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        if not signed(body, request.headers):
            self.unsigned.append(webhook_id)
        status = fate(webhook_id, attempt)
        if status is None:
            self.hung += 1
            await self._never.wait()
            raise AssertionError("a hung request is only ever cancelled")
        response = web.Response(status=status)
        await response.prepare(request)
        await response.write_eof()
        self.answers.append(Answer(time.monotonic(), webhook_id, status, body))  # sent, not merely chosen
        return response


def unreachable(registry: CollectorRegistry) -> float:
    return sample(registry, "gateway_delivery_attempts_total", outcome="unreachable", status_class="none")


def deliverer_busy(registry: CollectorRegistry) -> float:
    """Records the deliverer has yet to read (retries not due included) or is handling."""
    lag = sum(
        item.value
        for metric in registry.collect()
        if metric.name == "gateway_kafka_consumer_lag"
        for item in metric.samples
        if item.labels["group"].endswith("-deliverer")
    )
    return lag + sample(registry, "gateway_delivery_pending") + sample(registry, "gateway_delivery_in_flight")


async def make_changes(simulator: Simulator, registry: CollectorRegistry, made: list[str]) -> None:
    """Create `CHANGES` accounts, `PER_POLL` after each completed poll."""
    while len(made) < CHANGES:
        for _ in range(min(PER_POLL, CHANGES - len(made))):
            made.append(str(simulator.state.upsert("accounts")["accountid"]))
        target = polls(registry, "accounts") + 1
        await wait_for(lambda target=target: polls(registry, "accounts") >= target, within=30)


@pytest.mark.timeout(420)
async def test_receiver_chaos_every_change_is_delivered_signed_or_dead_lettered(
    settings: Settings,
    simulator: Simulator,
    gateway: RunningGateway,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    report_figure: Callable[[str], None],
) -> None:
    started = time.monotonic()
    chaos = Chaos()
    receiver = Receiver(chaos.answer)
    made: list[str] = []
    async with AsyncExitStack() as up:
        port = await up.enter_async_context(listening(receiver))
        receiver.url = f"http://127.0.0.1:{port}/hooks/in?token=s3cret"
        body = only(seed_instance("2016", simulator), "accounts")
        body["configuration"]["event.notification.callback.url"] = receiver.url
        body["configuration"]["event.notification.signature.key"] = KEY
        instance_id = await create(api, body)
        # The first change-tracking call is the baseline and publishes nothing.
        await wait_for(lambda: polls(registry, "accounts") >= 1, within=30)

        async with asyncio.TaskGroup() as group:
            group.create_task(make_changes(simulator, registry, made))
            await wait_for(lambda: len(made) >= OUTAGE_AFTER, within=60)
            await up.aclose()
            down_at = time.monotonic()
            unreachable_before = unreachable(registry)
            with pytest.raises(ConnectionRefusedError):  # it really stopped listening
                await asyncio.open_connection("127.0.0.1", port)
            # The outage's length is the scenario itself, not a wait for something to happen.
            await asyncio.sleep(OUTAGE_SECONDS)
            refused_while_down = unreachable(registry) - unreachable_before
            port_again = await up.enter_async_context(listening(receiver, port=port))
            up_at = time.monotonic()
        assert port_again == port

        published = [
            decode(record.value or b"", record.headers)
            for record in await read_committed(
                settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.crm.accounts", expect=CHANGES
            )
        ]
        published_ids = {str(event["id"]) for event in published}

        def delivered_ids() -> set[str]:
            return {answer.webhook_id for answer in chaos.answers if 200 <= answer.status < 300}

        def accounted() -> bool:
            dead = sum(
                sample(registry, "gateway_delivery_dead_letters_total", reason=reason) for reason in REASONS
            )
            return len(delivered_ids() & published_ids) + dead >= len(published_ids)

        await wait_for(accounted, within=180)
        # Then until nothing is left to read or handle, for the gauges' 1 s refresh: a repeat, if
        # any were still to come, would have come by then.
        idle_since: list[float] = []

        def settled() -> bool:
            if deliverer_busy(registry):
                idle_since.clear()
                return False
            idle_since[:] = idle_since or [time.monotonic()]
            return time.monotonic() - idle_since[0] > 2.0

        await wait_for(settled, within=60)
        letters = await dead_letters(settings, expect=0)
        async with api.get(f"/instances/{instance_id}/deliveries", params={"limit": "1000"}) as response:
            assert response.status == 200
            listed = await response.json()
    elapsed = time.monotonic() - started

    delivered = delivered_ids()
    dead = {letter.event_id for letter in letters}
    lost = published_ids - delivered - dead
    ok_answers = Counter(answer.webhook_id for answer in chaos.answers if 200 <= answer.status < 300)
    duplicates = {webhook_id: count - 1 for webhook_id, count in ok_answers.items() if count > 1}
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for hit in receiver.hits:
        bodies[hit.webhook_id].add(hit.body)
    id_of_change = {str(event["subject"]): str(event["id"]) for event in published}
    # Every request, first or repeat, carries the webhook-id of the one event of its change.
    misnamed = [
        hit.webhook_id
        for hit in receiver.hits
        if id_of_change.get(orjson.loads(hit.body)["message"]["events"][0]["objectId"]) != hit.webhook_id
    ]
    attempts = {
        outcome: sample(registry, "gateway_delivery_attempts_total", outcome=outcome, status_class=status)
        for outcome, status in (
            ("delivered", "2xx"),
            ("failed", "5xx"),
            ("throttled", "5xx"),
            ("timeout", "none"),
            ("unreachable", "none"),
            ("skipped", "none"),
        )
    }
    figures: dict[str, Any] = {
        "changes": len(made),
        "published": len(published),
        "delivered": len(delivered & published_ids),
        "dead_lettered": len(dead & published_ids),
        "delivered_and_dead_lettered": len(delivered & dead),
        "lost": len(lost),
        "duplicate_deliveries": sum(duplicates.values()),
        "events_delivered_more_than_once": len(duplicates),
        "requests_received": len(receiver.hits),
        "repeat_requests": len(receiver.hits) - len(bodies),
        "requests_hung": chaos.hung,
        "answers_2xx": sum(ok_answers.values()),
        "answers_5xx": sum(1 for answer in chaos.answers if answer.status >= 500),
        "unsigned_requests": len(chaos.unsigned),
        "attempts": attempts,
        "attempts_total": sum(attempts.values()),
        "refused_while_down": refused_while_down,
        "dead_letter_reasons": dict(Counter(letter.reason for letter in letters)),
        "outage_seconds": round(up_at - down_at, 1),
        "wall_seconds": round(elapsed, 1),
        "seed": SEED,
        "retry_schedule": SCHEDULE,
    }
    ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTEFACT.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    print("\nreceiver chaos figures:")
    for name, value in figures.items():
        print(f"  {name:32} {value}")
    print(f"  written to {ARTEFACT.relative_to(ROOT)}")
    report_figure(
        f"receiver chaos: {CHANGES} changes, delivered {figures['delivered']}, dead-lettered "
        f"{figures['dead_lettered']}, lost {figures['lost']}, duplicates {figures['duplicate_deliveries']} "
        f"(repeat requests {figures['repeat_requests']}, misnamed {len(misnamed)}), attempts "
        f"{figures['attempts_total']:.0f} (5xx {figures['answers_5xx']}, hangs {chaos.hung}, refused "
        f"while down {refused_while_down:.0f}, skipped by the breaker {attempts['skipped']:.0f}), "
        f"{figures['outage_seconds']} s down, {figures['wall_seconds']} s"
    )

    assert len(made) == CHANGES
    # Exactly once into Kafka: one event per change made, and no other.
    assert sorted(str(event["subject"]) for event in published) == sorted(made)
    assert len(published_ids) == CHANGES
    assert not lost, sorted(lost)[:10]
    assert not chaos.unsigned, chaos.unsigned[:10]
    assert up_at - down_at >= OUTAGE_SECONDS
    # Each repeat carries its event's one webhook-id, and every attempt of it the same body.
    assert all(len(seen) == 1 for seen in bodies.values())
    assert not misnamed, misnamed[:10]
    # The chaos did happen: failures, hangs, the outage, dead letters and deliveries after it.
    assert figures["answers_5xx"]
    assert chaos.hung
    assert refused_while_down
    assert dead
    assert delivered
    assert any(answer.at > up_at and answer.status == 200 for answer in chaos.answers)
    assert listed["count"] == min(len(dead), 1000)
