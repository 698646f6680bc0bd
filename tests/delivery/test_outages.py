"""A long outage disables an endpoint, as Svix's does after five days of failures (here after
4 s): its next failed attempt past the limit dead-letters the event as `endpoint-disabled` and
alerts the operators once; later events are kept without a request until a PATCH. A delivery in
between starts the outage over, and so does a quiet spell; a delivery waiting to retry when its
endpoint is disabled sends nothing more."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.delivery.runner import delivery_topics, retry_policy
from gateway.delivery.ssrf import GuardedConnector
from gateway.kafka.compacted import read_table
from gateway.kafka.topics import TopicNames
from gateway.metrics import DeliveryMetrics
from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    LOOPBACK,
    change,
    consumed,
    dead_letters,
    delivering,
    delivery_settings,
    produce,
    receiving,
    record_handler,
    sample,
    schema_validator,
    subscribed,
    subscription,
    webhook_instance,
)

ALERT = schema_validator("alert.schema.json")
DEAD_LETTER = schema_validator("dead-letter.schema.json")
LIMIT = 4.0  # seconds of failures that disable an endpoint


async def _failing(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=500)


def _outage_settings(settings: Settings) -> Settings:
    # Retries in memory only, so that an event's attempts fit well inside the limit however slow
    # the retry topics are on a loaded machine.
    return delivery_settings(
        settings, delivery_disable_after_hours=LIMIT / 3600, retry_schedule=[0.0, 0.05, 0.1]
    )


async def _delivery_state(settings: Settings) -> dict[str, Any]:
    """The committed delivery-state records, by endpoint."""
    topic = f"{settings.state_topic_prefix}.delivery-state"
    table = await read_table(
        settings.kafka_bootstrap_servers, topic, range(settings.delivery_topic_partitions)
    )
    return {key: orjson.loads(value) for key, value in table.items()}


async def _healthy(settings: Settings, endpoint: str, *, after: str) -> None:
    """Wait until the endpoint's record says it is healthy again, by `after` (a delivery, a lift)."""

    async def healthy() -> bool:
        return after in (await _delivery_state(settings)).get(endpoint, {})

    await wait_for(healthy)


async def test_an_endpoint_failing_longer_than_the_limit_is_disabled_alerts_once_and_a_patch_enables_it(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = _outage_settings(settings)
    async with (
        receiving() as callback,
        receiving(_failing) as down,
        receiving() as back,
        receiving() as operators,
    ):
        ops = subscription("ops", operators.url, alerts=True)
        instances = {
            "inst-1": subscribed(
                webhook_instance("inst-1", callback.url), [subscription("crm-sync", down.url), ops]
            )
        }
        revisions = {"inst-1": "2026-12-07T07:00:00Z"}  # the stored body's updatedDate
        first, second, third, fourth = (change("inst-1", n) for n in range(4))
        async with delivering(settings, instances, registry, revisions=revisions.get) as deliverer:
            # Within the limit: the first event's four attempts fail and it is dead-lettered as usual.
            await produce(settings, [first])
            (letter,) = await dead_letters(settings, expect=1)
            assert (letter.subscription_id, letter.reason, letter.attempts) == (
                "crm-sync",
                "retries-exhausted",
                4,
            )
            assert sample(registry, "gateway_delivery_failing_endpoints") == 1
            state = await _delivery_state(settings)
            since_ms = state["inst-1/crm-sync"]["failingSince"]
            assert since_ms == letter.history[0].at_ms
            assert state["inst-1/crm-sync"]["revision"] == "updated:2026-12-07T07:00:00Z"

            # Past it, the next failed attempt disables the subscription: one request, one alert.
            await wait_for(lambda: time.time() > since_ms / 1000 + LIMIT, within=10)
            await produce(settings, [second])
            letters = await dead_letters(settings, expect=2)
            disabled = next(d for d in letters if d.event_id == second.id)
            DEAD_LETTER.validate(disabled.to_json())
            assert (disabled.subscription_id, disabled.reason, disabled.attempts) == (
                "crm-sync",
                "endpoint-disabled",
                1,
            )
            assert disabled.last is not None
            assert disabled.last.status == 500
            assert "failed, longer than 4 s; the last:" in disabled.detail
            assert sample(registry, "gateway_delivery_disabled_instances") == 1
            assert sample(registry, "gateway_delivery_failing_endpoints") == 0
            state = await _delivery_state(settings)
            assert state["inst-1/crm-sync"] == {
                "disabled": True,
                "cause": "outage",
                "revision": state["inst-1/crm-sync"]["revision"],
                "status": 500,
                "atMs": disabled.last.at_ms,
            }
            # Disabled: the next event is kept without a request; the instance's callback has them all.
            await produce(settings, [third])
            letters = await dead_letters(settings, expect=3)
            kept = next(d for d in letters if d.event_id == third.id)
            assert (kept.reason, kept.attempts) == ("endpoint-disabled", 0)
            assert len(down.hits) == 5
            await wait_for(lambda: callback.ids == {first.id, second.id, third.id})
            await wait_for(lambda: len(operators.hits) == 2)  # the first event's exhaustion, the disabling
            alerts = {hit.json()["type"]: hit.json() for hit in operators.hits}
            for alert in alerts.values():
                ALERT.validate(alert)
            outage = alerts["gateway.alert.endpoint.disabled"]
            assert outage["subject"] == second.id
            assert outage["data"]["subscriptionId"] == "crm-sync"
            assert outage["data"]["reason"] == "endpoint-disabled"

            # A PATCH of the subscription (here: a new callback URL) lifts it; then the kept events
            # are recovered.
            instances["inst-1"] = subscribed(
                webhook_instance("inst-1", callback.url), [subscription("crm-sync", back.url), ops]
            )
            revisions["inst-1"] = "2026-12-07T08:00:00Z"
            await produce(settings, [fourth])
            await wait_for(lambda: fourth.id in back.ids)
            assert sample(registry, "gateway_delivery_disabled_instances") == 0
            replayed = await deliverer.dead_letters.replay("inst-1", subscription_id="crm-sync")
            assert {d.event_id for d in replayed} == {first.id, second.id, third.id}
            await wait_for(lambda: back.ids == {first.id, second.id, third.id, fourth.id})
            await _healthy(settings, "inst-1/crm-sync", after="liftedAt")
    assert len(down.hits) == 5
    assert len(operators.hits) == 2
    assert sample(registry, "gateway_delivery_alerts_total", kind="endpoint.disabled") == 1
    assert sample(registry, "gateway_delivery_dead_letters_total", reason="endpoint-disabled") == 2


async def test_a_delivery_between_failures_starts_the_outage_over(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = _outage_settings(settings)

    async def flaky(attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=500 if attempt <= 2 else 204)

    async with receiving(flaky) as receiver:
        first, second = change("inst-1", 1), change("inst-1", 2)
        instances = {"inst-1": webhook_instance("inst-1", receiver.url)}
        async with delivering(settings, instances, registry):
            await produce(settings, [first])
            await wait_for(lambda: len(receiver.for_id(first.id)) == 3)
            await wait_for(lambda: sample(registry, "gateway_delivery_failing_endpoints") == 0)
            # The first failure is now older than the limit, but the delivery since then ended it.
            started = receiver.for_id(first.id)[0].at
            await wait_for(lambda: time.monotonic() > started + LIMIT, within=10)
            await produce(settings, [second])
            await wait_for(lambda: len(receiver.for_id(second.id)) == 3)
            await _healthy(settings, "inst-1", after="deliveredAt")
    assert sample(registry, "gateway_delivery_disabled_instances") == 0
    assert sample(registry, "gateway_delivery_dead_letters_total", reason="endpoint-disabled") == 0
    assert sample(registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx") == 2


async def test_a_failure_after_a_quiet_spell_starts_the_outage_over(
    settings: Settings, registry: CollectorRegistry
) -> None:
    """An endpoint that failed once and then had nothing to do for longer than the limit is not
    disabled by its next failure: no attempt failed for the quiet spell in between."""
    limit = 3.0
    settings = delivery_settings(
        settings,
        delivery_disable_after_hours=limit / 3600,
        retry_schedule=[0.0],
        delivery_retry_after_max_seconds=0.1,
    )
    quiet = retry_policy(settings.delivery()).quiet_after
    assert quiet > limit  # so that waiting for the quiet spell outlasts the limit too
    async with receiving(_failing) as down:
        first, second = change("inst-1", 1), change("inst-1", 2)
        instances = {"inst-1": webhook_instance("inst-1", down.url)}
        async with delivering(settings, instances, registry):
            await produce(settings, [first])
            await dead_letters(settings, expect=1)
            last = down.for_id(first.id)[-1].at
            await wait_for(lambda: time.monotonic() > last + quiet, within=10)
            await produce(settings, [second])
            letters = await dead_letters(settings, expect=2)
    later = next(d for d in letters if d.event_id == second.id)
    assert (later.reason, later.attempts) == ("retries-exhausted", 2)
    assert (await _delivery_state(settings))["inst-1"]["failingSince"] == later.history[0].at_ms
    assert sample(registry, "gateway_delivery_dead_letters_total", reason="endpoint-disabled") == 0


async def test_a_delivery_waiting_to_retry_when_its_endpoint_is_disabled_sends_nothing_more(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings, retry_schedule=[3.0], delivery_inline_retry_max_seconds=5.0)
    waiting, gone = change("inst-1", 1), change("inst-1", 2)

    async def answer(_attempt: int, request: web.Request) -> web.StreamResponse:
        return web.Response(status=410 if request.headers["webhook-id"] == gone.id else 500)

    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    layout = delivery_topics(settings.delivery(), topics)
    topic = f"{settings.topic_prefix}.crm.accounts"
    async with (
        receiving(answer) as receiver,
        aiohttp.ClientSession(connector=GuardedConnector(allowed=LOOPBACK)) as session,
    ):
        instances = {"inst-1": webhook_instance("inst-1", receiver.url)}
        handler = record_handler(session, settings, layout, instances.get, DeliveryMetrics(registry))
        async with asyncio.TaskGroup() as group:
            retrying = group.create_task(handler.handle(consumed(topic, waiting, offset=1)))
            # Its first attempt failed; its retry waits 3 s in memory, while the next event's 410
            # disables the endpoint.
            await wait_for(lambda: len(receiver.for_id(waiting.id)) == 1)
            disabling = await handler.handle(consumed(topic, gone, offset=2))
        kept = retrying.result()
    assert [orjson.loads(o.value or b"{}").get("cause") for o in disabling if o.topic == layout.state] == [
        "gone"
    ]
    (letter,) = (orjson.loads(o.value or b"") for o in kept if o.topic == layout.dead_letters)
    assert (letter["reason"], letter["attempts"]) == ("endpoint-gone", 1)
    assert len(receiver.for_id(waiting.id)) == 1
