"""GET /instances/{id}/events/stream: an instance's change events as Server-Sent Events, as they are
committed to Kafka (read_committed), from the moment the stream opens."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from gateway.api.instances import stored_body
from gateway.api.responses import RequestProblem
from gateway.errors import EventDecodeError, Problem
from gateway.events import ChangeEvent
from gateway.instances import validate_instance
from gateway.kafka.topics import TopicAdmin, TopicNames

_POLL_MS = 500  # how soon a stream notices that the server is stopping
_KEEP_ALIVE_SECONDS = 15.0  # a comment line, so that proxies keep an idle stream open
_METADATA_WAIT_SECONDS = 10.0
_METADATA_RETRY_SECONDS = 0.1
_EVENT_TYPES = ("CREATED", "UPDATED", "DELETED")


@dataclass(slots=True)
class EventTail:
    """What a stream needs to tail the event topics; `closing` ends every stream on shutdown."""

    bootstrap_servers: str
    topics: TopicNames
    admin: TopicAdmin
    topic_partitions: int
    closing: asyncio.Event = field(default_factory=asyncio.Event)


EVENT_TAIL = web.AppKey("event_tail", EventTail)


def _filters(request: web.Request, resources: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The topics to tail (topic -> resource name) and the event type to keep, from the query."""
    resource = request.query.get("resource") or None
    event_type = (request.query.get("eventType") or "").upper() or None
    if resource is not None and resource not in resources:
        raise RequestProblem(400, [Problem("$.query.resource", f"the instance has no resource {resource!r}")])
    if event_type is not None and event_type not in _EVENT_TYPES:
        raise RequestProblem(400, [Problem("$.query.eventType", "must be CREATED, UPDATED or DELETED")])
    chosen = {topic: name for name, topic in resources.items() if resource in (None, name)}
    return chosen, event_type


async def stream_events(request: web.Request, instance_id: str) -> web.StreamResponse:
    """The stream itself; the API and the console both serve it."""
    tail = request.config_dict[EVENT_TAIL]
    instance = validate_instance(
        stored_body(request.config_dict, instance_id), instance_id=instance_id
    ).instance
    resources = {r.name: tail.topics.events(r.hub, r.object_type) for r in instance.resources}
    topics, event_type = _filters(request, resources)
    for topic in topics:
        await tail.admin.ensure(topic, partitions=tail.topic_partitions)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=tail.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        # A new topic's partitions are found within a second, for one metadata request a second.
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    try:
        await _from_the_end(consumer, list(topics))
        await response.write(b"event: ready\ndata: {}\n\n")
        await _forward(consumer, response, tail, instance_id, topics, event_type)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        await consumer.stop()
    return response


async def _from_the_end(consumer: AIOKafkaConsumer, topics: list[str]) -> None:
    """Every partition of the topics, each positioned at its end. Without a group, a subscription
    is assigned every partition of its topics once the client's metadata has them, which for a
    topic created a moment ago takes a refresh or two."""
    consumer.subscribe(topics=topics)
    async with asyncio.timeout(_METADATA_WAIT_SECONDS):
        # aiokafka has no callback for a group-less assignment, so it is polled for.
        while {tp.topic for tp in consumer.assignment()} != set(topics):  # noqa: ASYNC110
            await asyncio.sleep(_METADATA_RETRY_SECONDS)
    for partition in consumer.assignment():
        await consumer.position(partition)  # resolved now: nothing committed after `ready` is missed


async def _forward(
    consumer: AIOKafkaConsumer,
    response: web.StreamResponse,
    tail: EventTail,
    instance_id: str,
    topics: dict[str, str],
    event_type: str | None,
) -> None:
    key_prefix = f"{instance_id}:".encode()
    quiet_since = time.monotonic()
    while not tail.closing.is_set():
        batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=500)
        for partition, records in batches.items():
            for record in records:
                if not (record.key or b"").startswith(key_prefix):
                    continue
                shown = _shown(record.value or b"", record.headers, topics[partition.topic])
                if shown is not None and event_type in (None, shown["eventType"]):
                    await response.write(b"event: change\ndata: " + orjson.dumps(shown) + b"\n\n")
                    quiet_since = time.monotonic()
        if time.monotonic() - quiet_since >= _KEEP_ALIVE_SECONDS:
            await response.write(b": keep-alive\n\n")
            quiet_since = time.monotonic()


def _shown(value: bytes, headers: Any, resource: str) -> dict[str, Any] | None:
    """What a stream shows of an event: who changed how and when, not the record's fields."""
    try:
        event = ChangeEvent.decode(value, headers)
    except EventDecodeError:
        return None
    data = event.data
    return {
        "id": event.id,
        "time": event.time,
        "type": event.type,
        "resource": resource,
        "eventType": data.get("eventType"),
        "objectType": data.get("objectType"),
        "objectId": data.get("objectId"),
    }


async def _get_stream(request: web.Request) -> web.StreamResponse:
    return await stream_events(request, request.match_info["id"])


def add_stream_routes(app: web.Application, tail: EventTail) -> None:
    async def stop_streams(_app: web.Application) -> None:
        tail.closing.set()

    app[EVENT_TAIL] = tail
    app.on_shutdown.append(stop_streams)
    app.router.add_get("/instances/{id}/events/stream", _get_stream)
