"""The SSRF guard at delivery: a callback to a refused address is dead-lettered at once, with why."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from tests.delivery._support import (
    change,
    dead_letters,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    webhook_instance,
)


async def test_callbacks_to_loopback_are_refused_and_dead_lettered_with_the_reason(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings, callback_allowed_networks=[])  # the default: nothing allowed
    async with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        urls = {
            "literal": f"http://127.0.0.1:{port}/hook?token=s3cret",
            "name": f"http://localhost:{port}/hook",  # a name resolving to loopback
            "ipv6": f"http://[::1]:{port}/hook",
            "mapped": f"http://[::ffff:127.0.0.1]:{port}/hook",
        }
        instances = {key: webhook_instance(key, url) for key, url in urls.items()}
        events = {key: change(key, 1) for key in urls}
        await produce(settings, events.values())
        async with delivering(settings, instances, registry):
            letters = {d.instance_id: d for d in await dead_letters(settings, expect=len(urls))}
    assert receiver.hits == []
    for key, letter in letters.items():
        assert (letter.event_id, letter.reason, letter.attempts) == (events[key].id, "callback-refused", 1), (
            key
        )
        assert "loopback" in letter.detail, letter.detail
        assert "GATEWAY_CALLBACK_ALLOWED_NETWORKS" in letter.detail
        assert "s3cret" not in letter.detail
        assert [h.outcome for h in letter.history] == ["refused"]
    assert sample(registry, "gateway_delivery_dead_letters_total", reason="callback-refused") == len(urls)
