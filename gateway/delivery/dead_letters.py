"""Dead letters: the record of an event that could not be delivered, and their listing and replay.

A dead letter (`schemas/dead-letter.schema.json`) holds the event, why it failed, and its history of
attempts with their statuses, errors and times; never a callback URL, a header value or a key.
It lives in the compacted dead-letters topic under `<instanceId>/<eventId>` (with `/<subscriptionId>`
for a subscription's), in the partition of the instance, so the newest dead letter of an event and
target replaces older ones.

A replay writes each chosen event to the replay tier (due at once, attempt count reset, history
kept) and a tombstone for its dead letter, in one transaction: a replayed event is neither lost nor
listed any more. Events of an endpoint that is disabled (a 410, or failing too long) go straight back
to the dead letters until a PATCH re-enables it, so PATCH first, then replay.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

from gateway.delivery.outputs import DELIVERY_TRANSACTION_TIMEOUT_MS, Output, write_outputs
from gateway.delivery.retry import (
    AttemptRecord,
    Origin,
    Parked,
    delivery_key,
    history_from_json,
    history_to_json,
)
from gateway.delivery.topic_names import DeliveryTopics
from gateway.events import STRUCTURED_CONTENT_TYPE, rfc3339
from gateway.kafka.compacted import read_table
from gateway.kafka.partitioning import state_partition
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import DeliveryMetrics, KafkaMetrics

logger = logging.getLogger(__name__)

REASONS = (
    "retries-exhausted",
    "endpoint-gone",
    "endpoint-disabled",
    "callback-refused",
    "not-deliverable",
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    instance_id: str
    event_id: str
    reason: str  # one of REASONS
    detail: str
    attempts: int
    at_ms: int
    origin: Origin
    record_key: str | None
    history: tuple[AttemptRecord, ...]
    event: Mapping[str, Any] = field(repr=False)
    subscription_id: str | None = None  # None: the instance's own callback

    @property
    def key(self) -> str:
        return delivery_key(self.instance_id, self.event_id, self.subscription_id)

    @property
    def last(self) -> AttemptRecord | None:
        return self.history[-1] if self.history else None

    def to_json(self, *, with_data: bool = True) -> dict[str, Any]:
        last = self.last
        event = dict(self.event)
        if not with_data:
            event.pop("data", None)
        return {
            "instanceId": self.instance_id,
            "eventId": self.event_id,
            "subscriptionId": self.subscription_id,
            "reason": self.reason,
            "detail": self.detail,
            "attempts": self.attempts,
            "lastStatus": None if last is None else last.status,
            "lastError": None if last is None else last.error,
            "deadLetteredAt": rfc3339(self.at_ms),
            "deadLetteredAtMs": self.at_ms,
            "origin": self.origin.to_json(),
            "recordKey": self.record_key,
            "history": history_to_json(self.history),
            "event": event,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeadLetter:
        return cls(
            instance_id=str(data["instanceId"]),
            event_id=str(data["eventId"]),
            reason=str(data["reason"]),
            detail=str(data["detail"]),
            attempts=int(data["attempts"]),
            at_ms=int(data["deadLetteredAtMs"]),
            origin=Origin.from_json(data["origin"]),
            record_key=data.get("recordKey"),
            history=history_from_json(data["history"]),
            event=data["event"],
            subscription_id=data.get("subscriptionId"),
        )

    def output(self, topic: str, partitions: int) -> Output:
        return Output(
            topic=topic,
            key=self.key.encode(),
            value=orjson.dumps(self.to_json()),
            partition=state_partition(self.instance_id, partitions),
        )


class DeadLetters:
    """Lists and replays dead letters; the admin API's view of the dead-letters topic.

    Each listing reads the instance's partition of the topic from its start: fine for the dead
    letters of one instance, an admin operation, not a hot path.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: DeliveryTopics,
        partitions: int,
        metrics: DeliveryMetrics,
        kafka_metrics: KafkaMetrics,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = topics
        self._partitions = partitions
        self._metrics = metrics
        self._writer = TransactionalWriter(
            bootstrap_servers=bootstrap_servers,
            transactional_id=f"{topics.state_prefix}-replay-{uuid.uuid4().hex[:12]}",
            metrics=kafka_metrics,
            transaction_timeout_ms=DELIVERY_TRANSACTION_TIMEOUT_MS,
        )

    async def __aenter__(self) -> DeadLetters:
        await self._writer.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._writer.__aexit__(exc_type, exc, tb)

    async def find(
        self,
        instance_id: str,
        *,
        limit: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        event_ids: Collection[str] | None = None,
        subscription_id: str | None = None,
    ) -> list[DeadLetter]:
        """The instance's dead letters, newest first: those written in [since, until), of the given
        events and subscription (None: every target's)."""
        partition = state_partition(instance_id, self._partitions)
        table = await read_table(self._bootstrap, self._topics.dead_letters, [partition])
        prefix = f"{instance_id}/"
        found = []
        for key, value in table.items():
            if not key.startswith(prefix):
                continue
            letter = DeadLetter.from_json(orjson.loads(value))
            if since_ms is not None and letter.at_ms < since_ms:
                continue
            if until_ms is not None and letter.at_ms >= until_ms:
                continue
            if event_ids is not None and letter.event_id not in event_ids:
                continue
            if subscription_id is not None and letter.subscription_id != subscription_id:
                continue
            found.append(letter)
        found.sort(key=lambda letter: letter.at_ms, reverse=True)
        return found if limit is None else found[:limit]

    async def replay(
        self,
        instance_id: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        event_ids: Collection[str] | None = None,
        subscription_id: str | None = None,
    ) -> list[DeadLetter]:
        """Send the dead letters `find` chooses again; the replayed ones."""
        letters = await self.find(
            instance_id,
            since_ms=since_ms,
            until_ms=until_ms,
            event_ids=event_ids,
            subscription_id=subscription_id,
        )
        if not letters:
            return []
        now_ms = int(time.time() * 1000)
        outputs = []
        for letter in letters:
            parked = Parked(
                attempts=0,
                not_before_ms=now_ms,
                origin=letter.origin,
                history=letter.history,
                subscription_id=letter.subscription_id,
            )
            outputs.append(
                Output(
                    topic=self._topics.replay,
                    key=None if letter.record_key is None else letter.record_key.encode(),
                    value=orjson.dumps(dict(letter.event)),
                    headers=(("content-type", STRUCTURED_CONTENT_TYPE), *parked.headers()),
                )
            )
            outputs.append(
                Output(
                    topic=self._topics.dead_letters,
                    key=letter.key.encode(),
                    value=None,
                    partition=state_partition(instance_id, self._partitions),
                )
            )
        await write_outputs(self._writer, outputs)
        self._metrics.replays.inc(len(letters))
        logger.info(
            "replayed %d dead letters: %s",
            len(letters),
            ", ".join(letter.event_id for letter in letters[:20]) + (" ..." if len(letters) > 20 else ""),
            extra={"instance_id": instance_id},
        )
        return letters
