"""What happens to one record read by the deliverer, from its decoding to its outcome.

The outcome is the records to write with the record's offset commit: nothing (dropped on purpose),
or the event's delivery-history record with a parked retry, a dead letter, or nothing more
(delivered), sometimes with a delivery-state marker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeAlias

import aiohttp
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from gateway.delivery.alerts import Alert, AlertKind, alert_outputs, alert_recipients, is_alert
from gateway.delivery.attempt import WebhookRequest, build_request, send
from gateway.delivery.dead_letters import DeadLetter
from gateway.delivery.endpoint_state import Cause, Disabled, EndpointStates, endpoint_key
from gateway.delivery.history import DeliveryRecord, Status
from gateway.delivery.host_slots import HostSlots
from gateway.delivery.outputs import Output
from gateway.delivery.rate_limits import RateLimits
from gateway.delivery.retry import AttemptRecord, Origin, Parked, RetryPolicy, event_headers, read_parked
from gateway.delivery.topic_names import DeliveryTopics
from gateway.errors import CallbackGone, CallbackRefused, DeliveryError, EventDecodeError, InvalidSigningKey
from gateway.events import ChangeEvent, rfc3339
from gateway.instances.model import Instance, Notification
from gateway.metrics import DeliveryMetrics

logger = logging.getLogger(__name__)

InstanceLookup = Callable[[str], Instance | None]
ConsumedRecord: TypeAlias = "ConsumerRecord[bytes, bytes]"  # as read from an event topic or a retry tier
_FORGOTTEN_KEPT = 10_000  # ids of deleted instances remembered, so their events drop without waiting


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    timeout: float
    retry_after_max: float
    rotation_grace: float
    dead_letter_partitions: int  # also the delivery history's
    history: bool  # write the delivery history (`history.py`)
    unknown_instance_grace: float  # how long an unknown instance id may be one not yet read
    disable_after: float | None  # seconds of failing attempts that disable an endpoint; None: never


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One event being delivered, as read from an event topic or a retry tier."""

    record: ConsumedRecord = field(repr=False)
    event: ChangeEvent
    origin: Origin
    parked: Parked | None
    subscription_id: str | None = None  # None: the instance's own callback


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one delivery of an event goes: the instance's own callback, or one of its subscriptions."""

    subscription_id: str | None
    notification: Notification
    rate_limit: float | None = None  # requests per second

    def state_key(self, instance_id: str) -> str:
        return endpoint_key(instance_id, self.subscription_id)

    def endpoint(self, host: str, instance_id: str) -> str:
        """Its key in the host slots. Instances' callbacks share their host's slots and breaker; a
        subscription has its own, so that one failing path of a host holds back no other."""
        if self.subscription_id is None:
            return host
        return f"{host} for subscription {instance_id}/{self.subscription_id}"


def _targets(instance: Instance, delivery: _Delivery) -> list[_Target]:
    """Where an event goes: a parked one to the target it was parked for; a new one to the instance's
    callback and to every subscription whose filter it passes, each delivered on its own."""
    own = instance.notification
    if delivery.parked is not None:
        target = _target(instance, delivery.parked.subscription_id)
        return [] if target is None else [target]
    targets = [_Target(None, own)] if own.enabled and own.callback_url else []
    data = delivery.event.data
    if instance.subscriptions:
        object_type, event_type = str(data.get("objectType")), str(data.get("eventType"))
        changed = data.get("changedAttributes")
        targets.extend(
            _Target(subscription.id, subscription.notification, subscription.rate_limit)
            for subscription in instance.subscriptions
            if subscription.notification.callback_url
            and subscription.wants(object_type, event_type, changed if isinstance(changed, list) else None)
        )
    return targets


def _target(instance: Instance, subscription_id: str | None) -> _Target | None:
    """The target `subscription_id` names, while it is enabled and has a callback URL."""
    rate_limit = None
    if subscription_id is None:
        notification = instance.notification
    else:
        found = next((s for s in instance.subscriptions if s.id == subscription_id and s.enabled), None)
        if found is None:
            return None
        notification, rate_limit = found.notification, found.rate_limit
    if not notification.enabled or not notification.callback_url:
        return None
    return _Target(subscription_id, notification, rate_limit)


@dataclass(frozen=True, slots=True)
class _Try:
    number: int
    at: float  # epoch seconds
    ms: int | None  # how long its request took; None when none was made
    endpoint: str  # its key in the host slots
    revision: str
    state_key: str  # its endpoint's key in the delivery-state topic


class _Timing:
    """How long the request of one attempt took, slot waits excluded; None when none was made."""

    __slots__ = ("ms",)

    def __init__(self) -> None:
        self.ms: int | None = None

    def took(self, started: float, status: int | None, metrics: DeliveryMetrics) -> None:
        seconds = time.monotonic() - started
        metrics.request_duration.labels(_status_class(status)).observe(seconds)
        self.ms = int(seconds * 1000)


_REASONS: dict[Cause, str] = {"gone": "endpoint-gone", "outage": "endpoint-disabled"}  # dead letters


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def _status_class(status: int | None) -> str:
    return "none" if status is None else f"{status // 100}xx"


class RecordHandler:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        host_slots: HostSlots,
        policy: RetryPolicy,
        topics: DeliveryTopics,
        instances: InstanceLookup,
        endpoints: EndpointStates,
        metrics: DeliveryMetrics,
        config: HandlerConfig,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._host_slots = host_slots
        self._policy = policy
        self._topics = topics
        self._instances = instances
        self._endpoints = endpoints
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._rate_limits = RateLimits()
        self._forgotten: dict[str, None] = {}

    async def handle(
        self, record: ConsumedRecord, *, handed_over: Container[TopicPartition] = frozenset()
    ) -> tuple[Output, ...]:
        """The outputs of one record. `handed_over` holds the partitions being revoked: a record of
        one of them makes no further attempt, and is cancelled instead, for the partition's next
        owner to read again."""
        delivery = self._read(record)
        if delivery is None:
            return ()
        instance = await self._instance(delivery.event.instance_id)
        if instance is None:
            self._drop("instance-deleted", delivery)
            return ()
        targets = _targets(instance, delivery)
        if not targets:
            self._drop("notifications-off", delivery)
            return ()
        if len(targets) == 1:
            return await self._deliver(delivery, instance, targets[0], handed_over)
        # Each target on its own: one failing endpoint retries or parks without holding the others.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._deliver(delivery, instance, t, handed_over)) for t in targets]
        return tuple(output for task in tasks for output in task.result())

    async def _deliver(
        self,
        delivery: _Delivery,
        instance: Instance,
        target: _Target,
        handed_over: Container[TopicPartition],
    ) -> tuple[Output, ...]:
        """Deliver the event to one target, until it is delivered, parked or dead-lettered."""
        record = delivery.record
        delivery = replace(delivery, subscription_id=target.subscription_id)
        state_key = target.state_key(delivery.event.instance_id)
        outputs: list[Output] = []
        revision = self._endpoints.revision(instance)
        history = list(delivery.parked.history) if delivery.parked else []
        attempts = delivery.parked.attempts if delivery.parked else 0
        while True:
            # Checked before every attempt: another delivery may have disabled the endpoint while
            # this one waited to retry.
            marker = self._endpoints.disabled_at(state_key, revision)
            if marker is not None:
                return (*outputs, *self._kept(delivery, marker, attempts, history))
            outputs.extend(self._endpoints.lift(state_key, revision, int(self._clock() * 1000)))
            attempts += 1
            at = self._clock()
            timing = _Timing()
            try:
                request = build_request(
                    delivery.event, target.notification, now=at, rotation_grace=self._config.rotation_grace
                )
            except (EventDecodeError, InvalidSigningKey) as exc:
                detail = str(exc)
                return (
                    *outputs,
                    *self._dead_letter(delivery, "not-deliverable", detail, attempts - 1, history),
                )
            endpoint = target.endpoint(request.host, delivery.event.instance_id)
            try:
                if target.rate_limit is not None:
                    await self._rate_limits.wait_turn(state_key, target.rate_limit)
                status_code = await self._attempt(request, endpoint, timing)
            except DeliveryError as exc:
                if exc.attempted and exc.retriable:
                    outputs.extend(self._endpoints.failed(state_key, int(at * 1000), revision))
                step = self._after_failure(
                    delivery, exc, _Try(attempts, at, timing.ms, endpoint, revision, state_key), history
                )
                if isinstance(step, float):
                    if TopicPartition(record.topic, record.partition) in handed_over:
                        # A retry now would hold the group's rebalance up, and might be cut off and
                        # repeated by the next owner anyway.
                        raise asyncio.CancelledError from exc
                    await asyncio.sleep(step)
                    # The instance or subscription may have changed or gone meanwhile.
                    current = self._instances(delivery.event.instance_id)
                    current_target = None if current is None else _target(current, target.subscription_id)
                    if current is None or current_target is None:
                        self._drop("instance-deleted" if current is None else "notifications-off", delivery)
                        return tuple(outputs)
                    target = current_target
                    revision = self._endpoints.revision(current)
                    continue
                return (*outputs, *step)
            self._count("delivered", status_code, delivery)
            outputs.extend(self._endpoints.succeeded(state_key, int(at * 1000)))
            self._observe_end_to_end(delivery.event)
            history.append(AttemptRecord(attempts, int(at * 1000), "delivered", status_code, None, timing.ms))
            return (*outputs, *self._history(delivery, "delivered", attempts, history, None))

    def _after_failure(
        self, delivery: _Delivery, exc: DeliveryError, attempt: _Try, history: list[AttemptRecord]
    ) -> float | tuple[Output, ...]:
        """What follows a failed attempt: seconds to wait before trying again in memory, or the
        records that finish the event (parked, dead-lettered, its instance disabled)."""
        if not exc.attempted:
            # Flow control, not an attempt: the host is slow and its backlog is full, or the
            # subscription is over its rate limit.
            self._metrics.deferred.labels(exc.outcome).inc()
            delay = exc.retry_after or 0.0
            return self._park(delivery, attempt.number - 1, history, delay, self._policy.tier_for(delay))
        self._count(exc.outcome, exc.status, delivery)
        history.append(
            AttemptRecord(
                attempt.number, int(attempt.at * 1000), exc.outcome, exc.status, str(exc), attempt.ms
            )
        )
        if exc.disables_instance:
            return self._disable(delivery, "gone", str(exc), exc, attempt, history)
        if not exc.retriable:
            return self._dead_letter(delivery, exc.dead_letter_reason, str(exc), attempt.number, history)
        outage = self._outage(attempt)
        if outage is not None:
            return self._disable(delivery, "outage", f"{outage}; the last: {exc}", exc, attempt, history)
        may_wait = exc.retries_inline and not self._host_slots.is_open(attempt.endpoint)
        retry = self._policy.next(
            attempt.number, retry_after=exc.retry_after, may_wait_inline=may_wait, rng=self._rng
        )
        if retry is None:
            detail = f"no success after {attempt.number} attempts; the last: {exc}"
            return (
                *self._dead_letter(delivery, "retries-exhausted", detail, attempt.number, history),
                *self._alert("delivery.exhausted", delivery, "retries-exhausted", detail, attempt.number),
            )
        if retry.inline:
            return retry.delay
        return self._park(delivery, attempt.number, history, retry.delay, retry.tier)

    def _outage(self, attempt: _Try) -> str | None:
        """What disables the attempt's endpoint for failing too long, if it has."""
        limit = self._config.disable_after
        streak = self._endpoints.streak(attempt.state_key)
        if limit is None or streak is None or attempt.at - streak.since_ms / 1000 < limit:
            return None
        return f"every attempt since {rfc3339(streak.since_ms)} failed, longer than {_duration(limit)}"

    def _kept(
        self, delivery: _Delivery, marker: Disabled, attempts: int, history: list[AttemptRecord]
    ) -> tuple[Output, ...]:
        """Dead-letter the event of a disabled endpoint without a request, for a replay to send."""
        why = "it answered 410 Gone" if marker.cause == "gone" else "its attempts failed too long"
        detail = f"the endpoint is disabled: {why}; PATCH the instance, then replay"
        return self._dead_letter(delivery, _REASONS[marker.cause], detail, attempts, history)

    def _disable(
        self,
        delivery: _Delivery,
        cause: Cause,
        detail: str,
        exc: DeliveryError,
        attempt: _Try,
        history: list[AttemptRecord],
    ) -> tuple[Output, ...]:
        """Disable the attempt's endpoint, dead-letter the event and alert the operators."""
        # Concurrent deliveries to the endpoint may all disable it: the first one raises the alert.
        newly = self._endpoints.disabled_at(attempt.state_key, attempt.revision) is None
        marker = Disabled(cause, attempt.revision, exc.status, int(attempt.at * 1000))
        state = self._endpoints.disable(attempt.state_key, marker)
        reason = _REASONS[cause]
        alert = self._alert("endpoint.disabled", delivery, reason, detail, attempt.number) if newly else ()
        return (state, *self._dead_letter(delivery, reason, detail, attempt.number, history), *alert)

    async def _attempt(self, request: WebhookRequest, endpoint: str, timing: _Timing) -> int:
        slots = self._host_slots
        async with slots.slot(endpoint):
            started = time.monotonic()
            try:
                status = await send(
                    self._session,
                    request,
                    time_limit=self._config.timeout,
                    retry_after_max=self._config.retry_after_max,
                )
            except CallbackRefused:
                raise
            except CallbackGone as exc:
                slots.succeeded(endpoint)  # it answered; the instance is what stops
                timing.took(started, exc.status, self._metrics)
                raise
            except DeliveryError as exc:
                slots.failed(endpoint)
                timing.took(started, exc.status, self._metrics)
                raise
            slots.succeeded(endpoint)
            timing.took(started, status, self._metrics)
            return status

    def _read(self, record: ConsumedRecord) -> _Delivery | None:
        tier = self._topics.tier_of(record.topic)
        try:
            parked = None if tier is None else read_parked(record.headers)
            event = ChangeEvent.decode(record.value or b"", event_headers(record.headers))
        except EventDecodeError as exc:
            self._metrics.dropped.labels("undecodable").inc()
            logger.warning(
                "dropping a record that is not a change event at %s/%d@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None
        origin = parked.origin if parked else Origin(record.topic, record.partition, record.offset)
        return _Delivery(record, event, origin, parked)

    async def _instance(self, instance_id: str) -> Instance | None:
        """The instance, waiting a little for one this replica has not read yet: an event can reach
        the deliverer before the instance record that made a poller produce it."""
        instance = self._instances(instance_id)
        if instance is not None or instance_id in self._forgotten:
            return instance
        deadline = time.monotonic() + self._config.unknown_instance_grace
        while instance is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            instance = self._instances(instance_id)
        if instance is None:
            self._forgotten[instance_id] = None
            if len(self._forgotten) > _FORGOTTEN_KEPT:
                del self._forgotten[next(iter(self._forgotten))]
        return instance

    def _drop(self, reason: str, delivery: _Delivery) -> None:
        self._metrics.dropped.labels(reason).inc()
        logger.debug(
            "dropped (%s)",
            reason,
            extra={"instance_id": delivery.event.instance_id, "event_id": delivery.event.id},
        )

    def _count(self, outcome: str, status: int | None, delivery: _Delivery) -> None:
        self._metrics.attempts.labels(outcome, _status_class(status)).inc()
        if self._metrics.instance_attempts is not None:
            self._metrics.instance_attempts.labels(delivery.event.instance_id, outcome).inc()

    def _observe_end_to_end(self, event: ChangeEvent) -> None:
        if event.time is None:
            return
        try:
            changed = datetime.fromisoformat(event.time).timestamp()
        except ValueError:
            return
        self._metrics.end_to_end.observe(max(self._clock() - changed, 0.0))

    def _park(
        self, delivery: _Delivery, attempts: int, history: list[AttemptRecord], delay: float, tier: float
    ) -> tuple[Output, ...]:
        record = delivery.record
        not_before_ms = int((self._clock() + delay) * 1000)
        parked = Parked(attempts, not_before_ms, delivery.origin, tuple(history), delivery.subscription_id)
        self._metrics.parked.labels(f"{tier:g}").inc()
        logger.debug(
            "parked for %.1f s: %s",
            delay,
            history[-1].error if history else "",
            extra={"instance_id": delivery.event.instance_id, "event_id": delivery.event.id},
        )
        retry = Output(
            topic=self._topics.retry(tier),
            key=record.key,
            value=record.value,
            headers=(*event_headers(record.headers), *parked.headers()),
        )
        return (retry, *self._history(delivery, "retrying", attempts, history, not_before_ms))

    def _dead_letter(
        self, delivery: _Delivery, reason: str, detail: str, attempts: int, history: list[AttemptRecord]
    ) -> tuple[Output, ...]:
        key = delivery.record.key
        letter = DeadLetter(
            instance_id=delivery.event.instance_id,
            event_id=delivery.event.id,
            reason=reason,
            detail=detail,
            attempts=attempts,
            at_ms=int(self._clock() * 1000),
            origin=delivery.origin,
            record_key=None if key is None else key.decode("utf-8", "replace"),
            history=tuple(history),
            event=delivery.event.envelope,
            subscription_id=delivery.subscription_id,
        )
        self._metrics.dead_letters.labels(reason).inc()
        logger.warning(
            "dead-lettered (%s) after %d attempts: %s",
            reason,
            attempts,
            detail,
            extra={"instance_id": delivery.event.instance_id, "event_id": delivery.event.id},
        )
        letter_output = letter.output(self._topics.dead_letters, self._config.dead_letter_partitions)
        return (letter_output, *self._history(delivery, "failed", attempts, history, None))

    def _alert(
        self, kind: AlertKind, delivery: _Delivery, reason: str, detail: str, attempts: int
    ) -> tuple[Output, ...]:
        """The alert that the event was lost, parked for each of the instance's alerts subscriptions."""
        if is_alert(delivery.event):
            return ()  # a lost alert raises none: its endpoint would alert about itself for ever
        self._metrics.alerts.labels(kind).inc()
        instance = self._instances(delivery.event.instance_id)
        recipients = () if instance is None else alert_recipients(instance)
        at_ms = int(self._clock() * 1000)
        alert = Alert(kind, delivery.event, delivery.subscription_id, reason, detail, attempts, at_ms)
        return alert_outputs(
            alert, recipients, topic=self._topics.replay, key=delivery.record.key, origin=delivery.origin
        )

    def _history(
        self,
        delivery: _Delivery,
        status: Status,
        attempts: int,
        history: list[AttemptRecord],
        next_retry_ms: int | None,
    ) -> tuple[Output, ...]:
        """The event's delivery-history record (`history.py`), when the history is kept."""
        if not self._config.history:
            return ()
        event = delivery.event
        record = DeliveryRecord(
            instance_id=delivery.event.instance_id,
            event_id=delivery.event.id,
            status=status,
            at_ms=int(self._clock() * 1000),
            attempts=attempts,
            next_retry_ms=next_retry_ms,
            event_type=event.type,
            subject=event.subject,
            history=tuple(history),
            subscription_id=delivery.subscription_id,
        )
        return (record.output(self._topics.deliveries, self._config.dead_letter_partitions),)
