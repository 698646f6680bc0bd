"""Subscriptions: each receives exactly the events its filter lets through, with its own retries and
dead letters, and one that fails the whole time holds back neither the others nor the callback."""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.instances import Instance
from gateway.settings import Settings
from tests._events import PolledChange
from tests.conftest import wait_for
from tests.delivery._support import (
    Receiver,
    change,
    dead_letters,
    delivering,
    delivery_settings,
    produce,
    receiving,
    sample,
    subscribed,
    subscription,
    webhook_instance,
)

N = 500
_TYPES = ("CREATED", "UPDATED", "DELETED")
_COLUMNS = (["name"], ["telephone1"], ["name", "description"], None)


def _mixed(instance_id: str) -> list[PolledChange]:
    """N changes of accounts and contacts, of every event type, updates of various columns."""
    changes = []
    for n in range(N):
        event_type = _TYPES[n % 3]
        changes.append(
            dataclasses.replace(
                change(instance_id, n, object_type="accounts" if n % 2 else "contacts"),
                event_type=event_type,
                changed=_COLUMNS[n % 4] if event_type == "UPDATED" else None,
            )
        )
    return changes


def _with_subscriptions(base: Instance, urls: dict[str, str]) -> Instance:
    return subscribed(
        base,
        [
            subscription(
                "updates-of-names", urls["updates-of-names"], eventTypes=["UPDATED"], changedColumns=["name"]
            ),
            subscription(
                "accounts", urls["accounts"], objectTypes=["accounts"], eventTypes=["CREATED", "DELETED"]
            ),
            subscription("broken", urls["broken"], objectTypes=["contacts"]),
        ],
    )


def _wanted(events: list[PolledChange]) -> dict[str, set[str]]:
    """The ids each target must receive, by the filters `_with_subscriptions` sets."""
    return {
        "own": {e.id for e in events},
        "updates-of-names": {
            e.id for e in events if e.event_type == "UPDATED" and (e.changed is None or "name" in e.changed)
        },
        "accounts": {e.id for e in events if e.object_type == "accounts" and e.event_type != "UPDATED"},
        "broken": {e.id for e in events if e.object_type == "contacts"},
    }


async def _deliver_all(settings: Settings, events: list[PolledChange], healthy: dict[str, Receiver]) -> float:
    """Produce the events; seconds until every healthy target has exactly its share."""
    wanted = _wanted(events)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for object_type in ("accounts", "contacts"):
        await produce(settings, [e for e in events if e.object_type == object_type], object_type=object_type)
    await wait_for(lambda: all(r.ids == wanted[name] for name, r in healthy.items()), within=60)
    return loop.time() - started


async def test_three_subscriptions_receive_exactly_their_share_and_a_failing_one_slows_no_other(
    settings: Settings, registry: CollectorRegistry
) -> None:
    settings = delivery_settings(settings, delivery_max_pending=1024)

    async def failing(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    async with (
        receiving() as own,
        receiving() as names,
        receiving() as accounts,
        receiving() as calm_contacts,
        receiving(failing) as broken,
    ):
        calm = _with_subscriptions(
            webhook_instance("calm", own.url),
            {"updates-of-names": names.url, "accounts": accounts.url, "broken": calm_contacts.url},
        )
        routed = _with_subscriptions(
            webhook_instance("routed", own.url),
            {"updates-of-names": names.url, "accounts": accounts.url, "broken": broken.url},
        )
        healthy = {"own": own, "updates-of-names": names, "accounts": accounts}
        async with delivering(settings, {calm.id: calm, routed.id: routed}, registry):
            # The baseline: every endpoint answers. Then the same events of an instance whose
            # contacts subscription fails every attempt until its events are dead-lettered.
            calm_events = _mixed(calm.id)
            baseline = await _deliver_all(settings, calm_events, {**healthy, "broken": calm_contacts})
            for receiver in healthy.values():
                receiver.hits.clear()
            routed_events = _mixed(routed.id)
            beside_failing = await _deliver_all(settings, routed_events, healthy)
            wanted = _wanted(routed_events)
            letters = await dead_letters(settings, expect=len(wanted["broken"]), within=60)

    assert {letter.event_id for letter in letters} == wanted["broken"]
    assert {letter.subscription_id for letter in letters} == {"broken"}
    assert {letter.attempts for letter in letters} == {1 + len(settings.retry_schedule)}
    assert len(broken.hits) == len(letters) * (1 + len(settings.retry_schedule))
    for receiver in healthy.values():
        assert len(receiver.hits) == len(receiver.ids)  # each event once per healthy endpoint
    print(
        f"{N} changes: callback {len(wanted['own'])}, updates-of-names {len(wanted['updates-of-names'])},"
        f" accounts {len(wanted['accounts'])}; contacts {len(wanted['broken'])} dead-lettered after"
        f" {len(broken.hits)} attempts. Healthy endpoints done in {baseline:.2f} s with every endpoint"
        f" answering, {beside_failing:.2f} s beside the failing one"
    )
    # Loosely, as in test_isolation: one CPU-bound process runs the deliverer and every receiver, and
    # the failing subscription's attempts cost it CPU; waiting on them would cost whole seconds.
    assert beside_failing < 3 * baseline + 1.0


async def test_a_failing_subscription_opens_its_own_breaker_not_that_of_another_on_its_host(
    settings: Settings, registry: CollectorRegistry
) -> None:
    # Three failures open a breaker for longer than the test: had the two subscriptions shared one,
    # the healthy one's events would be parked behind it.
    settings = delivery_settings(
        settings, delivery_breaker_failures=3, delivery_breaker_cooldown_seconds=60.0
    )

    async def failing_path(_attempt: int, request: web.Request) -> web.StreamResponse:
        return web.Response(status=503 if request.path == "/failing" else 200)

    async with receiving(failing_path) as host:
        origin = host.url.split("/hooks/")[0]
        instance = subscribed(
            webhook_instance("shared-host", f"{origin}/own"),
            [subscription("failing", f"{origin}/failing"), subscription("healthy", f"{origin}/healthy")],
        )
        events = [change(instance.id, n) for n in range(40)]
        async with delivering(settings, {instance.id: instance}, registry):
            await produce(settings, events)
            wanted = {event.id for event in events}

            def healthy_ids() -> set[str]:
                return {hit.webhook_id for hit in host.hits if hit.path == "/healthy"}

            await wait_for(lambda: healthy_ids() == wanted, within=30)
            skipped = {"outcome": "skipped", "status_class": "none"}
            await wait_for(lambda: sample(registry, "gateway_delivery_attempts_total", **skipped) > 0)

    failing = [hit for hit in host.hits if hit.path == "/failing"]
    healthy = [hit for hit in host.hits if hit.path == "/healthy"]
    assert len(healthy) == len(events)  # each once, none skipped
    assert {hit.webhook_id for hit in host.hits if hit.path == "/own"} == wanted
    assert 3 <= len(failing) < len(events)  # its breaker opened and skipped the rest
