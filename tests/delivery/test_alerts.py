"""Alerts: an instance's `alerts` subscription receives a signed CloudEvent when one of its endpoints
loses an event (retries exhausted) and when one is disabled by a 410, and a lost alert raises none."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from gateway.delivery import elements_signature
from gateway.settings import Settings
from tests.conftest import wait_for
from tests.delivery._support import (
    KEY,
    change,
    dead_letters,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    schema_validator,
    subscribed,
    subscription,
    webhook_instance,
)

ALERT = schema_validator("alert.schema.json")
N = 3


async def _unavailable(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=503)


async def _gone(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=410)


async def test_lost_events_and_a_disabled_endpoint_alert_the_operators_once_each(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings)
    attempts = 1 + len(settings.retry_schedule)
    async with (
        receiving(_unavailable) as down,
        receiving(_gone) as gone,
        receiving() as operators,
        receiving(_unavailable) as operators_down,
    ):
        watched = subscribed(
            webhook_instance("watched", down.url),
            [subscription("leaving", gone.url), subscription("ops", operators.url, alerts=True)],
        )
        # Its alerts endpoint is down too: the alert about its lost event is lost in turn, quietly.
        unwatched = subscribed(
            webhook_instance("unwatched", down.url), [subscription("ops", operators_down.url, alerts=True)]
        )
        async with delivering(settings, {watched.id: watched, unwatched.id: unwatched}, registry):
            events = [change(watched.id, n) for n in range(N)]
            lost = change(unwatched.id, N)
            await produce(settings, [*events, lost])
            # Each of the watched instance's events is lost twice (callback, leaving); the
            # unwatched one's once, and then its alert.
            letters = await dead_letters(settings, expect=2 * N + 2, within=60)
            await wait_for(lambda: len(operators.hits) >= N + 1, within=30)
            await wait_for(lambda: len(operators_down.hits) >= attempts, within=30)

    assert {(letter.subscription_id, letter.reason) for letter in letters} == {
        (None, "retries-exhausted"),
        ("leaving", "endpoint-gone"),
        ("ops", "retries-exhausted"),
    }
    alerts = [hit.json() for hit in operators.hits]
    for hit, alert in zip(operators.hits, alerts, strict=True):
        ALERT.validate(alert)
        assert hit.headers["Elements-Webhook-Signature"] == elements_signature(KEY, hit.body)
        Webhook(KEY.encode()).verify(hit.body, hit.headers)
        assert hit.webhook_id == alert["id"]
    exhausted = [a for a in alerts if a["type"] == "gateway.alert.delivery.exhausted"]
    disabled = [a for a in alerts if a["type"] == "gateway.alert.endpoint.disabled"]
    assert len(alerts) == N + 1
    assert {a["subject"] for a in exhausted} == {e.id for e in events}
    assert {(a["data"]["subscriptionId"], a["data"]["reason"]) for a in exhausted} == {
        (None, "retries-exhausted")
    }
    assert {a["data"]["attempts"] for a in exhausted} == {attempts}
    assert all(a["source"] == f"/instances/{watched.id}" for a in alerts)
    assert len(disabled) == 1  # the first 410 disables the endpoint; later events find it disabled
    assert disabled[0]["data"]["subscriptionId"] == "leaving"
    assert disabled[0]["data"]["reason"] == "endpoint-gone"
    assert disabled[0]["subject"] in {e.id for e in events}
    # The unwatched instance's alert was tried, lost and dead-lettered, raising no alert of its own.
    assert len(operators_down.hits) == attempts
    assert sample(registry, "gateway_delivery_alerts_total", kind="delivery.exhausted") == N + 1
    assert sample(registry, "gateway_delivery_alerts_total", kind="endpoint.disabled") == 1
