"""POST /instances/{id}/test-event: a signed test notification to the instance's callback URL, sent
as a delivery would send it (same body format, signatures, headers, SSRF guard and time limit), and
what the receiver answered. It is not written to Kafka and never retried."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import ChainMapProxy, web

from gateway.api.instances import stored_body
from gateway.api.responses import RequestProblem, json_response
from gateway.delivery.attempt import build_request, send
from gateway.errors import DeliveryError, Problem
from gateway.events import ChangeEvent, EventEncoder
from gateway.instances import validate_instance

TEST_OBJECT_TYPE = "eventGatewayTest"


@dataclass(frozen=True, slots=True)
class TestEventSender:
    """A session through the callback guard, and the delivery settings an attempt keeps to."""

    __test__ = False  # not a pytest class, whatever its name

    session: aiohttp.ClientSession
    time_limit: float
    retry_after_max: float
    rotation_grace: float


TEST_EVENTS = web.AppKey("test_events", TestEventSender)


def _test_event(instance_id: str, name: str, element_key: str, tags: tuple[str, ...]) -> ChangeEvent:
    encoder = EventEncoder(
        instance_id=instance_id,
        instance_name=name,
        element_key=element_key,
        tags=tags,
        hub="crm",
        object_type=TEST_OBJECT_TYPE,
    )
    object_id = f"test-{uuid.uuid4()}"
    _key, value, headers = encoder.encode(
        object_id=object_id,
        event_type="CREATED",
        time_ms=int(time.time() * 1000),
        version=object_id,
        raw={"test": True, "message": "A test notification from event-gateway; no record changed."},
    )
    return ChangeEvent.decode(value, headers)


async def send_test_event(app: web.Application | ChainMapProxy, instance_id: str) -> dict[str, Any]:
    """Deliver one test notification; the receiver's answer, or why there was none."""
    instance = validate_instance(stored_body(app, instance_id), instance_id=instance_id).instance
    notification = instance.notification
    if notification.callback_url is None:
        problem = Problem("$.configuration['event.notification.callback.url']", "is not set")
        raise RequestProblem(400, [problem])
    sender = app[TEST_EVENTS]
    event = _test_event(instance.id, instance.name, instance.element_key, instance.tags)
    request = build_request(event, notification, now=time.time(), rotation_grace=sender.rotation_grace)
    started = time.perf_counter()
    answer: dict[str, Any] = {"webhookId": event.id, "host": request.host}
    try:
        status = await send(
            sender.session, request, time_limit=sender.time_limit, retry_after_max=sender.retry_after_max
        )
    except DeliveryError as failed:
        answer.update(delivered=False, status=failed.status, error=str(failed))
    else:
        answer.update(delivered=True, status=status, error=None)
    answer["durationMs"] = round((time.perf_counter() - started) * 1000)
    return answer


async def post_test_event(request: web.Request) -> web.Response:
    return json_response(await send_test_event(request.app, request.match_info["id"]))


def add_test_event_routes(app: web.Application, sender: TestEventSender) -> None:
    app[TEST_EVENTS] = sender
    app.router.add_post("/instances/{id}/test-event", post_test_event)
