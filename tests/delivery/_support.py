"""Shared helpers of the delivery tests: receivers on 127.0.0.1, events in Kafka, a running deliverer."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry
from referencing import Registry, Resource

from gateway.delivery.dead_letters import DeadLetter
from gateway.delivery.endpoint_state import EndpointStates
from gateway.delivery.handler import ConsumedRecord, HandlerConfig, InstanceLookup, RecordHandler
from gateway.delivery.history import DeliveryHistory
from gateway.delivery.host_slots import HostSlots
from gateway.delivery.runner import Deliverer, retry_policy, start_deliverer
from gateway.delivery.topic_names import DeliveryTopics
from gateway.instances import validate_instance
from gateway.instances.model import Instance
from gateway.kafka.compacted import read_to_end
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.metrics import DeliveryMetrics, KafkaMetrics, TaskMetrics
from gateway.settings import Settings
from gateway.tasks import Watchdog
from tests._events import PolledChange, encode
from tests.conftest import ROOT, wait_for
from tests.instances.seed_examples import seed_bodies

KEY = "MySecretEventSignatureKey"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
LOOPBACK = [IPv4Network("127.0.0.0/8")]


def delivery_settings(settings: Settings, **changes: Any) -> Settings:
    """Test settings: loopback allowed, a short schedule whose later retries wait in retry topics,
    short timeouts, and a breaker that stays out of the way unless a test wants it."""
    values: dict[str, Any] = {
        "callback_allowed_networks": LOOPBACK,
        "retry_schedule": [0.0, 0.2, 0.5],
        "delivery_inline_retry_max_seconds": 0.1,
        "delivery_timeout_seconds": 1.0,
        "delivery_retry_after_max_seconds": 2.0,
        "delivery_breaker_failures": 1000,
        "delivery_breaker_cooldown_seconds": 0.5,
        "delivery_metadata_max_age_ms": 500,
        "delivery_topic_partitions": 2,
        "topic_partitions": 2,
    }
    values.update(changes)
    return settings.model_copy(update=values)


@dataclass(frozen=True, slots=True)
class Hit:
    at: float  # monotonic
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return orjson.loads(self.body)


Behaviour = Callable[[int, web.Request], Awaitable[web.StreamResponse]]


async def ok(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=200)


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers with `behaviour(attempt number of that
    webhook-id, request)`."""

    behaviour: Behaviour = ok
    hits: list[Hit] = field(default_factory=list)
    url: str = ""
    _attempts: Counter[str] = field(default_factory=Counter)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        hit = Hit(time.monotonic(), request.path, dict(request.headers), body)
        self.hits.append(hit)
        webhook_id = request.headers.get("webhook-id", "")
        self._attempts[webhook_id] += 1
        return await self.behaviour(self._attempts[webhook_id], request)

    def for_id(self, webhook_id: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.webhook_id == webhook_id]

    @property
    def ids(self) -> set[str]:
        return {hit.webhook_id for hit in self.hits}


@asynccontextmanager
async def listening(receiver: Receiver, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    """Serve `receiver` on `host:port` (0: a free port) until the block exits; the port. On exit the
    listening socket and every open connection close, and requests still running are cancelled."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver._handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def receiving(behaviour: Behaviour = ok, *, host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    receiver = Receiver(behaviour)
    async with listening(receiver, host=host) as port:
        receiver.url = f"http://{host}:{port}/hooks/in?token=s3cret"
        yield receiver


def webhook_instance(
    instance_id: str, url: str, *, key: str | None = KEY, fmt: str = "elements", **config: str
) -> Instance:
    """The seed's "Dynamics 2016 and later" instance with its callback set to `url`."""
    body = seed_bodies()["2016"]
    body["configuration"].update(
        {
            "user.username": "someone@example.com",
            "user.password": "pw",
            "event.notification.callback.url": url,
            "event.notification.format": fmt,
            **config,
        }
    )
    if key is not None:
        body["configuration"]["event.notification.signature.key"] = key
    body["name"] = f"hooks-{instance_id}"
    body["tags"] = ["delivery-test"]
    return validate_instance(body, instance_id=instance_id).instance


def subscribed(base: Instance, subscriptions: list[dict[str, Any]]) -> Instance:
    """`base` with these subscriptions (bodies such as `subscription` gives)."""
    body = {
        "element": {"key": "dynamicscrmadfs"},
        "name": base.name,
        "tags": list(base.tags),
        "configuration": dict(base.configuration),
        "subscriptions": subscriptions,
    }
    return validate_instance(body, instance_id=base.id).instance


def subscription(subscription_id: str, url: str, **spec: Any) -> dict[str, Any]:
    """A subscription's body, its callback `url` signed with KEY."""
    configuration = {"event.notification.callback.url": url, "event.notification.signature.key": KEY}
    return {"id": subscription_id, **spec, "configuration": configuration}


def change(instance_id: str, n: int, *, object_type: str = "accounts") -> PolledChange:
    return PolledChange(
        instance_id=instance_id,
        instance_name=f"hooks-{instance_id}",
        element_key="dynamicscrmadfs",
        tags=("delivery-test",),
        hub="crm",
        object_type=object_type,
        object_id=f"obj-{n}",
        event_type="UPDATED",
        time_ms=int(time.time() * 1000) - 1000,
        version=str(n),
        raw={"id": f"obj-{n}", "attributes": {"name": f"record {n}"}},
    )


async def create_topic(settings: Settings, topic: str) -> None:
    async with TopicAdmin(bootstrap_servers=settings.kafka_bootstrap_servers, replication_factor=1) as admin:
        await admin.ensure(topic, partitions=settings.topic_partitions)


async def produce(
    settings: Settings, events: Iterable[PolledChange], *, object_type: str = "accounts"
) -> str:
    """Write the events to their event topic (created first); the topic's name."""
    topic = f"{settings.topic_prefix}.crm.{object_type}"
    await create_topic(settings, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5, enable_idempotence=True
    )
    await producer.start()
    try:
        futures = []
        for event in events:
            value, headers = encode(event)
            futures.append(await producer.send(topic, value=value, key=event.key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return topic


@asynccontextmanager
async def delivering(
    settings: Settings,
    instances: dict[str, Instance],
    registry: CollectorRegistry,
    **kwargs: Any,
) -> AsyncIterator[Deliverer]:
    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    async with (
        TopicAdmin(bootstrap_servers=settings.kafka_bootstrap_servers, replication_factor=1) as admin,
        start_deliverer(
            settings.delivery(),
            topics=topics,
            admin=admin,
            instances=instances.get,
            registry=registry,
            kafka_metrics=KafkaMetrics(registry),
            watchdog=Watchdog(TaskMetrics(registry)),
            **kwargs,
        ) as deliverer,
    ):
        yield deliverer


def consumed(topic: str, event: PolledChange, *, offset: int) -> ConsumedRecord:
    """The event as a deliverer's consumer reads it from partition 0 of `topic`."""
    value, headers = encode(event)
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), headers)


def record_handler(
    session: aiohttp.ClientSession,
    settings: Settings,
    layout: DeliveryTopics,
    instances: InstanceLookup,
    metrics: DeliveryMetrics,
) -> RecordHandler:
    """A deliverer's record handler alone, for a test that hands it records itself."""
    policy = retry_policy(settings.delivery())
    return RecordHandler(
        session=session,
        host_slots=HostSlots(
            concurrency=8,
            host_concurrency=8,
            backlog=8,
            failures=100,
            cooldown=1.0,
            slow_after=0.5,
            metrics=metrics,
        ),
        policy=policy,
        topics=layout,
        instances=instances,
        endpoints=EndpointStates(
            topic=layout.state,
            partitions=settings.delivery_topic_partitions,
            metrics=metrics,
            quiet_after=policy.quiet_after,
        ),
        metrics=metrics,
        config=HandlerConfig(
            timeout=1.0,
            retry_after_max=1.0,
            rotation_grace=0.0,
            dead_letter_partitions=settings.delivery_topic_partitions,
            history=True,
            unknown_instance_grace=0.0,
            disable_after=None,
        ),
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def delivery_history(settings: Settings) -> DeliveryHistory:
    return DeliveryHistory(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=f"{settings.state_topic_prefix}.deliveries",
        partitions=settings.delivery_topic_partitions,
    )


async def dead_letters(settings: Settings, *, expect: int, within: float = 15.0) -> list[DeadLetter]:
    """The live dead letters (tombstones applied) of every partition, once there are `expect`."""
    topic = f"{settings.state_topic_prefix}.dead-letters"
    found: list[DeadLetter] = []

    async def enough() -> bool:
        nonlocal found
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # else a "latest" reset races read_to_end's seek
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(settings.delivery_topic_partitions)]
            consumer.assign(partitions)
            table = await read_to_end(consumer, partitions)
        finally:
            await consumer.stop()
        found = [DeadLetter.from_json(orjson.loads(value)) for value in table.values()]
        return len(found) >= expect

    await wait_for(enough, within=within)
    return found


async def committed(settings: Settings, topic: str) -> dict[int, int | None]:
    """The deliverer group's committed offset of every partition of `topic`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.state_topic_prefix}-deliverer",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(topic, p)) for p in range(settings.topic_partitions)
        }
    finally:
        await consumer.stop()


def schema_validator(name: str) -> Draft202012Validator:
    """A validator of one of `schemas/`, with the others registered for its `$ref`s."""
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (orjson.loads(path.read_bytes()) for path in SCHEMAS.glob("*.schema.json"))
    )
    schema = orjson.loads((SCHEMAS / name).read_bytes())
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


@asynccontextmanager
async def deliverer_process(
    settings: Settings, instances: dict[str, str], tmp: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A deliverer in a process of its own (`_deliverer_main`), ready once entered, killed on exit.
    `instances` maps instance ids to callback URLs; its log goes to `tmp/deliverer.log`."""
    config = tmp / "deliverer.json"
    config.write_bytes(
        orjson.dumps(
            {
                "settings": settings.model_dump(mode="json", exclude={"secret_key", "admin_token"}),
                "instances": instances,
            }
        )
    )
    with (tmp / "deliverer.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.delivery._deliverer_main",
            str(config),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            assert (await process.stdout.readline()).strip() == b"ready"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
