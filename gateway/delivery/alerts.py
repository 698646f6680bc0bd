"""Alerts: a signed notification to an instance's `alerts` subscriptions when one of its endpoints
loses an event (retries exhausted) or is disabled (410 Gone), as Svix's operational webhooks do.

An alert is a CloudEvent beside the change events:

    {"specversion": "1.0", "id": "<32 hex>", "source": "/instances/<id>",
     "type": "gateway.alert.delivery.exhausted", "subject": "<the lost event's id>", "time": "...",
     "data": {"alertType": "delivery.exhausted", "instanceId": "...", "subscriptionId": "crm-sync",
              "eventId": "...", "eventType": "crm.accounts.updated", "reason": "retries-exhausted",
              "detail": "no success after 4 attempts; ...", "attempts": 4}}

It is written to the replay tier, parked for the alerts subscription, in the transaction that
dead-letters the event, so it is sent exactly when the event is lost, with the same signing,
retries, dead letters and history as any delivery. Its id derives from what it reports, so a
receiver dedupes the copies a crash may repeat by `webhook-id`. An alert that is itself lost
raises none: an operator endpoint that is down would otherwise alert about itself for ever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.delivery.outputs import Output
from gateway.delivery.retry import Origin, Parked
from gateway.events import SPEC_VERSION, STRUCTURED_CONTENT_TYPE, ChangeEvent, rfc3339
from gateway.instances.model import Instance

AlertKind = Literal["delivery.exhausted", "endpoint.disabled"]
TYPE_PREFIX = "gateway.alert."


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    event: ChangeEvent  # the event that was lost
    subscription_id: str | None  # the endpoint that lost it; None: the instance's callback
    reason: str  # the dead letter's
    detail: str
    attempts: int
    at_ms: int

    @property
    def id(self) -> str:
        basis = "\x1f".join((self.kind, self.event.instance_id, self.event.id, self.subscription_id or ""))
        return hashlib.sha256(basis.encode()).hexdigest()[:32]

    def envelope(self) -> dict[str, Any]:
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": f"/instances/{self.event.instance_id}",
            "type": TYPE_PREFIX + self.kind,
            "subject": self.event.id,
            "time": rfc3339(self.at_ms),
            "datacontenttype": "application/json",
            "data": {
                "alertType": self.kind,
                "instanceId": self.event.instance_id,
                "subscriptionId": self.subscription_id,
                "eventId": self.event.id,
                "eventType": self.event.type,
                "reason": self.reason,
                "detail": self.detail,
                "attempts": self.attempts,
            },
        }


def is_alert(event: ChangeEvent) -> bool:
    return event.type.startswith(TYPE_PREFIX)


def alert_recipients(instance: Instance) -> tuple[str, ...]:
    """The ids of the instance's enabled alerts subscriptions."""
    return tuple(s.id for s in instance.subscriptions if s.alerts and s.enabled)


def alert_outputs(
    alert: Alert, recipients: Sequence[str], *, topic: str, key: bytes | None, origin: Origin
) -> tuple[Output, ...]:
    """The alert parked for each recipient in `topic`, due now."""
    value = orjson.dumps(alert.envelope())
    content_type = ("content-type", STRUCTURED_CONTENT_TYPE)
    return tuple(
        Output(
            topic=topic,
            key=key,
            value=value,
            headers=(content_type, *Parked(0, alert.at_ms, origin, (), recipient).headers()),
        )
        for recipient in recipients
    )
