"""One change polled and delivered end to end by a gateway running every role, and what each metric
shows for it; and what the metrics never show: secrets, URLs, per-instance labels unless asked."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import ConsumerLag, process_registry
from gateway.runtime import RunningGateway
from gateway.settings import Settings
from gateway.sim import DEMO_USERS, Simulator
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, seed_instance, wait_for
from tests.delivery._support import KEY, delivery_settings, receiving
from tests.polling._support import create, insert, only, polls


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return delivery_settings(settings)


def total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def series(registry: CollectorRegistry, name: str, **labels: str) -> dict[tuple[str, ...], float]:
    """The samples of `name` whose labels include `labels`, by their label values."""
    return {
        tuple(sample.labels.values()): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    }


_COUNTED: tuple[tuple[str, dict[str, str]], ...] = (
    ("gateway_polls_total", {"resource": "accounts", "outcome": "ok"}),
    ("gateway_poll_duration_seconds_count", {"resource": "accounts"}),
    ("gateway_source_requests_total", {"status_class": "2xx"}),
    ("gateway_records_fetched_total", {"resource": "accounts"}),
    ("gateway_events_published_total", {"object_type": "accounts", "event_type": "CREATED"}),
    ("gateway_kafka_transactions_total", {"outcome": "committed"}),
    ("gateway_kafka_produce_seconds_count", {}),
    ("gateway_delivery_attempts_total", {"outcome": "delivered", "status_class": "2xx"}),
    ("gateway_delivery_request_seconds_count", {"status_class": "2xx"}),
    ("gateway_delivery_end_to_end_seconds_count", {}),
)


async def test_one_change_polled_and_delivered_moves_each_metric(
    settings: Settings,
    simulator: Simulator,
    gateway: RunningGateway,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
) -> None:
    async with receiving() as receiver:
        body = only(seed_instance("2016", simulator), "accounts")
        body["configuration"]["event.notification.callback.url"] = receiver.url
        body["configuration"]["event.notification.signature.key"] = KEY
        instance_id = await create(api, body)
        # The first change-tracking call is the baseline: it publishes nothing.
        await wait_for(lambda: polls(registry, "accounts") >= 1)
        before = {name: total(registry, name, **labels) for name, labels in _COUNTED}

        account_id = insert(simulator, "accounts")
        await wait_for(lambda: any(account_id in hit.body.decode() for hit in receiver.hits), within=30)
        delivered = ("gateway_delivery_attempts_total", {"outcome": "delivered", "status_class": "2xx"})
        await wait_for(lambda: total(registry, delivered[0], **delivered[1]) > before[delivered[0]])
        moved = {name: total(registry, name, **labels) - before[name] for name, labels in _COUNTED}

        # Every poll runs in the deliverer's process too: the counts go on while the test reads them.
        assert moved["gateway_polls_total"] >= 1
        assert moved["gateway_poll_duration_seconds_count"] >= moved["gateway_polls_total"]
        assert moved["gateway_source_requests_total"] >= 1
        assert moved["gateway_records_fetched_total"] >= 1
        assert moved["gateway_events_published_total"] == 1
        assert moved["gateway_kafka_transactions_total"] >= 1
        assert moved["gateway_kafka_produce_seconds_count"] >= 1
        assert moved["gateway_delivery_attempts_total"] == 1
        assert moved["gateway_delivery_request_seconds_count"] >= 1
        assert moved["gateway_delivery_end_to_end_seconds_count"] == 1
        assert total(registry, "gateway_kafka_produce_seconds_sum") > 0
        assert total(registry, "gateway_events_published_total", event_type="UPDATED") == 0
        assert total(registry, "gateway_polls_total", outcome="failed") == 0
        assert total(registry, "gateway_delivery_dead_letters_total") == 0

        assert total(registry, "gateway_pollers_running") == 1
        ages = series(registry, "gateway_checkpoint_age_seconds")
        assert set(ages) == {("accounts",)}
        assert 0 <= ages["accounts",] < 10

        # Lag per group and partition: the deliverers' on the event topic, read to its end once the
        # change is delivered; the pollers' on the instances topic, read to its end once it polls.
        events_topic = f"{settings.topic_prefix}.crm.accounts"
        deliverers = f"{settings.state_topic_prefix}-deliverer"
        pollers = f"{settings.state_topic_prefix}-pollers"

        def lag(group: str, topic: str) -> dict[tuple[str, ...], float]:
            return series(registry, "gateway_kafka_consumer_lag", group=group, topic=topic)

        expected = {(deliverers, events_topic, str(p)) for p in range(settings.topic_partitions)}
        await wait_for(lambda: set(lag(deliverers, events_topic)) == expected)
        await wait_for(lambda: set(lag(deliverers, events_topic).values()) == {0.0})
        instances_topic = f"{settings.state_topic_prefix}.instances"
        assert len(lag(pollers, instances_topic)) == settings.state_partitions
        assert set(lag(pollers, instances_topic).values()) == {0.0}

        async with aiohttp.ClientSession() as http, http.get(f"{gateway.metrics_url}/metrics") as response:
            assert response.status == 200
            exposition = await response.text()

    password = next(iter(DEMO_USERS.values()))
    secrets = (password, KEY, ADMIN_TOKEN, SECRET_KEY, "s3cret")
    for secret in secrets:
        assert secret not in exposition
    values = {
        value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert "gateway_kafka_consumer_lag" in exposition
    assert not [value for value in values if "://" in value or "/" in value], "a URL in a label"
    assert instance_id not in values, "per-instance labels are off by default"
    assert receiver.url.split("//")[1].split("/")[0] not in exposition  # the callback's host:port


def test_a_process_registry_has_the_process_and_platform_collectors() -> None:
    registry = process_registry()
    names = {family.name for family in registry.collect()}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    assert any(name.startswith("python_gc_") for name in names)


async def test_health_and_readiness_are_served_on_the_metrics_and_the_api_port(
    gateway: RunningGateway,
) -> None:
    assert gateway.api_url is not None
    async with aiohttp.ClientSession() as http:
        for base in (gateway.metrics_url, gateway.api_url):
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "alive"}

            async def ready(base: str = base) -> bool:
                async with http.get(f"{base}/readyz") as response:
                    return response.status == 200

            await wait_for(ready)
            async with http.get(f"{base}/readyz") as response:
                assert await response.json() == {
                    "ready": True,
                    "shuttingDown": False,
                    "conditions": {"kafka": True, "tasks": True, "partitions assigned": True},
                }


class _Consumer:
    """What ConsumerLag reads of an AIOKafkaConsumer: per partition, (position, high watermark, last
    stable offset); a position of None is one being reset, which `position()` would wait for."""

    def __init__(self, state: dict[TopicPartition, tuple[int | None, int | None, int | None]]) -> None:
        self.state = state

    def assignment(self) -> set[TopicPartition]:
        return set(self.state)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.state[tp][1]

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.state[tp][2]

    async def position(self, tp: TopicPartition) -> int:
        position = self.state[tp][0]
        if position is None:
            await asyncio.Event().wait()  # as aiokafka waits for a reset: never, here
        assert position is not None
        return position


async def test_consumer_lag_is_read_at_scrape_time_without_waiting() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag()
    registry.register(lag)
    t = [TopicPartition("events.crm.accounts", p) for p in range(4)]
    committed = _Consumer({t[0]: (5, 12, 10), t[1]: (None, 12, 10), t[2]: (3, None, None)})
    uncommitted = _Consumer({t[3]: (7, 9, -1)})  # read_uncommitted: no stable offset, the high watermark
    lag.track("g1", committed)
    lag.track("g2", uncommitted)
    assert series(registry, "gateway_kafka_consumer_lag") == {
        ("g1", "events.crm.accounts", "0"): 5.0,  # up to the last stable offset, not the high watermark
        ("g2", "events.crm.accounts", "3"): 2.0,
    }  # partition 1: its position is being reset; partition 2: not fetched yet
    committed.state[t[0]] = (10, 12, 10)
    assert series(registry, "gateway_kafka_consumer_lag", group="g1") == {
        ("g1", "events.crm.accounts", "0"): 0.0
    }
    lag.forget(committed)
    lag.forget(uncommitted)
    assert series(registry, "gateway_kafka_consumer_lag") == {}
