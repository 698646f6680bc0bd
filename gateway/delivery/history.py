"""Delivery history: where each webhook of an instance stands, with its attempts, for the admin API.

The deliverer writes one record per event each time the event's fate is decided: `delivered`,
`retrying` (parked, with the time of its next try) or `failed` (dead-lettered). The record goes out
in the transaction that commits the event's offset (`committer.py`), so the history says what the
group committed, whichever replica did it. It lives in `<state_prefix>.deliveries`, compacted and
also time-limited (`GATEWAY_DELIVERY_HISTORY_RETENTION_HOURS`), keyed `<instanceId>/<eventId>` and
partitioned by instance id like the dead letters: the newest record of an event replaces the older,
and one instance's history is read from one partition, so any replica can answer.

Attempts made inline (short retries waited in memory) appear when the event's fate is decided, not
one by one. A record carries the event's type and subject, never its data, a URL or a header.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.delivery.outputs import Output
from gateway.delivery.retry import AttemptRecord, delivery_key, history_from_json, history_to_json
from gateway.events import rfc3339
from gateway.kafka.compacted import read_table
from gateway.kafka.partitioning import state_partition

Status = Literal["delivered", "retrying", "failed"]
STATUSES: tuple[Status, ...] = ("delivered", "retrying", "failed")


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    instance_id: str
    event_id: str  # also the webhook-id of every attempt
    status: Status
    at_ms: int  # when this status was decided
    attempts: int
    next_retry_ms: int | None  # only while retrying
    event_type: str
    subject: str
    history: tuple[AttemptRecord, ...]
    subscription_id: str | None = None  # None: the instance's own callback

    @property
    def key(self) -> str:
        return delivery_key(self.instance_id, self.event_id, self.subscription_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "eventId": self.event_id,
            "subscriptionId": self.subscription_id,
            "webhookId": self.event_id,
            "status": self.status,
            "at": rfc3339(self.at_ms),
            "atMs": self.at_ms,
            "attempts": self.attempts,
            "nextRetryAt": None if self.next_retry_ms is None else rfc3339(self.next_retry_ms),
            "eventType": self.event_type,
            "subject": self.subject,
            "history": history_to_json(self.history),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveryRecord:
        status = str(data["status"])
        if status not in STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")
        next_retry = data.get("nextRetryAtMs")
        return cls(
            instance_id=str(data["instanceId"]),
            event_id=str(data["eventId"]),
            status=status,
            at_ms=int(data["atMs"]),
            attempts=int(data["attempts"]),
            next_retry_ms=None if next_retry is None else int(next_retry),
            event_type=str(data["eventType"]),
            subject=str(data["subject"]),
            history=history_from_json(data["history"]),
            subscription_id=data.get("subscriptionId"),
        )

    def output(self, topic: str, partitions: int) -> Output:
        stored = {**self.to_json(), "nextRetryAtMs": self.next_retry_ms}
        return Output(
            topic=topic,
            key=self.key.encode(),
            value=orjson.dumps(stored),
            partition=state_partition(self.instance_id, partitions),
        )


@dataclass(frozen=True, slots=True)
class Page:
    records: tuple[DeliveryRecord, ...]
    next_cursor: str | None  # None: this is the last page


def _order(record: DeliveryRecord) -> tuple[int, str]:
    """Newest first; the event id breaks ties, so a cursor names one place in the order."""
    return (-record.at_ms, record.event_id)


def encode_cursor(record: DeliveryRecord) -> str:
    raw = orjson.dumps([record.at_ms, record.event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The place after which the next page starts, in `_order`'s terms; ValueError for a cursor
    this listing did not give."""
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("is not a cursor of this listing") from exc
    match decoded:
        case [int() as at_ms, str() as event_id]:
            return (-at_ms, event_id)
    raise ValueError("is not a cursor of this listing")


def paginate(
    records: Iterable[DeliveryRecord],
    *,
    limit: int,
    statuses: frozenset[Status] = frozenset(STATUSES),
    since_ms: int | None = None,
    subscription_id: str | None = None,
    cursor: str | None = None,
) -> Page:
    """One page of the records that pass the filters, newest first, starting after `cursor`.
    `subscription_id` keeps that subscription's deliveries only; None keeps every target's."""
    after = None if cursor is None else decode_cursor(cursor)
    chosen = sorted(
        (
            record
            for record in records
            if record.status in statuses
            and (since_ms is None or record.at_ms >= since_ms)
            and (subscription_id is None or record.subscription_id == subscription_id)
            and (after is None or _order(record) > after)
        ),
        key=_order,
    )
    page = tuple(chosen[:limit])
    more = len(chosen) > limit
    return Page(page, encode_cursor(page[-1]) if more and page else None)


class DeliveryHistory:
    """The admin API's view of the deliveries topic. Each listing reads the instance's partition
    from its start: an admin operation, bounded by the topic's retention, not a hot path."""

    def __init__(self, *, bootstrap_servers: str, topic: str, partitions: int) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._partitions = partitions

    async def page(
        self,
        instance_id: str,
        *,
        limit: int,
        statuses: frozenset[Status] = frozenset(STATUSES),
        since_ms: int | None = None,
        subscription_id: str | None = None,
        cursor: str | None = None,
    ) -> Page:
        records = await self._read(instance_id)
        return paginate(
            records,
            limit=limit,
            statuses=statuses,
            since_ms=since_ms,
            subscription_id=subscription_id,
            cursor=cursor,
        )

    async def _read(self, instance_id: str) -> list[DeliveryRecord]:
        partition = state_partition(instance_id, self._partitions)
        table = await read_table(self._bootstrap, self._topic, [partition])
        prefix = f"{instance_id}/"
        return [
            DeliveryRecord.from_json(orjson.loads(value))
            for key, value in table.items()
            if key.startswith(prefix)
        ]
