"""Webhook bodies, rendered from the CloudEvent the deliverer reads back from Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson

from gateway.errors import EventDecodeError
from gateway.events import ChangeEvent

BodyFormat = Literal["elements", "cloudevents"]

_EVENT_ITEM_FIELDS = ("eventType", "objectId", "objectType", "elementKey", "date")
_CHANGE_FIELDS = ("changedAttributes", "previous")  # only on UPDATED events of a known row


def render_body(event: ChangeEvent, fmt: BodyFormat) -> bytes:
    """The request body of one event: Cloud Elements' notification (`elements`, the default of
    migrated instances) or the structured CloudEvent unchanged (`cloudevents`).

    Raises `EventDecodeError` when the event lacks a field the `elements` shape needs.
    """
    if fmt == "cloudevents":
        return orjson.dumps(event.envelope)
    return orjson.dumps({"message": _elements_message(event)})


def _elements_message(event: ChangeEvent) -> dict[str, Any]:
    """One event per notification. Cloud Elements batched up to 10, but one per request lets each
    event be signed, retried and acknowledged on its own, and its id be the request's id; receivers
    written for Cloud Elements already loop over `events`, so a batch of one reads the same."""
    data = event.data
    try:
        return {
            "eventId": event.id,
            "instanceId": event.instance_id,
            "instanceName": data["instanceName"],
            "instanceTags": data["tags"],
            "elementKey": data["elementKey"],
            "events": [_event_item(data)],
            "raw": data["raw"],
        }
    except (KeyError, TypeError) as exc:
        raise EventDecodeError(
            f"event {event.id!r} cannot be rendered as a Cloud Elements notification: "
            f"{type(exc).__name__} {exc}"
        ) from exc


def _event_item(data: Mapping[str, Any]) -> dict[str, Any]:
    item = {name: data[name] for name in _EVENT_ITEM_FIELDS}
    for name in _CHANGE_FIELDS:
        if name in data:
            item[name] = data[name]
    return item
