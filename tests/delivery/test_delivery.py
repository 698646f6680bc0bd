"""The success path: one signed request per event, verifiable by both kinds of receivers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from gateway import __version__
from gateway.delivery import render_body
from gateway.events import ChangeEvent
from gateway.settings import Settings
from tests._events import encode
from tests.conftest import wait_for
from tests.delivery._support import (
    KEY,
    change,
    committed,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    schema_validator,
    webhook_instance,
)

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(("fmt", "key"), [("elements", KEY), ("cloudevents", WHSEC)])
async def test_each_event_is_delivered_once_signed_for_both_kinds_of_receivers(
    settings: Settings, registry: CollectorRegistry, fmt: str, key: str
) -> None:
    settings = delivery_settings(settings)
    async with receiving() as receiver:
        instance = webhook_instance(
            "inst-1",
            receiver.url,
            key=key,
            fmt=fmt,
            **{
                "event.notification.callback.headers": '{"X-Tenant": "acme"}',
                "event.notification.basic.username": "hook-user",
                "event.notification.basic.password": "hook-pass",
            },
        )
        events = [change("inst-1", n) for n in range(5)]
        topic = await produce(settings, events)
        async with delivering(settings, {"inst-1": instance}, registry):
            await wait_for(lambda: len(receiver.ids) == 5)

            async def all_committed() -> bool:
                return sum(offset or 0 for offset in (await committed(settings, topic)).values()) == 5

            await wait_for(all_committed, within=5)

    assert len(receiver.hits) == 5
    validator = schema_validator(f"webhook-{fmt}.schema.json")
    by_id = {event.id: event for event in events}
    for hit in receiver.hits:
        event = by_id[hit.webhook_id]
        assert hit.body == render_body(ChangeEvent.decode(*encode(event)), fmt)  # type: ignore[arg-type]
        validator.validate(hit.json())
        headers = hit.headers
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == f"event-gateway/{__version__}"
        assert headers["X-Tenant"] == "acme"
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"hook-user:hook-pass").decode()
        assert headers["Elements-Webhook-Id"] == event.id
        # A Standard Webhooks receiver, with the key as that library expects it.
        secret = key if key.startswith("whsec_") else key.encode()
        Webhook(secret).verify(hit.body, headers)
        if not key.startswith("whsec_"):
            digest = hmac.new(key.encode(), hit.body, hashlib.sha256).digest()
            assert headers["Elements-Webhook-Signature"] == "sha256=" + base64.b64encode(digest).decode()
        assert hit.path == "/hooks/in"
    assert sample(registry, "gateway_delivery_attempts_total", outcome="delivered", status_class="2xx") == 5
    assert sample(registry, "gateway_delivery_end_to_end_seconds_count") == 5
