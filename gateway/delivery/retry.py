"""When to try again, and the delivery history a parked record carries in its `gw-*` headers.

Attempt 1 is the first request; retry k follows attempt k after `schedule[k - 1]` seconds, with
±20 % jitter, or after the receiver's Retry-After when that is longer (clamped). A retry due within
`inline_max` seconds waits in memory; a later one is parked in the retry tier of its delay. After
attempt `1 + len(schedule)` the event is dead-lettered.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import EventDecodeError
from gateway.events import rfc3339

Headers = Sequence[tuple[str, bytes]]

ATTEMPTS_HEADER = "gw-attempts"
NOT_BEFORE_HEADER = "gw-not-before"
ORIGIN_HEADER = "gw-origin"
LAST_ERROR_HEADER = "gw-last-error"
HISTORY_HEADER = "gw-history"
SUBSCRIPTION_HEADER = "gw-subscription"
_OWN_PREFIX = "gw-"
_HISTORY_KEPT = 20  # the newest entries; replays may add more attempts than the schedule has
_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the event was first read: the coordinates operators look it up by."""

    topic: str
    partition: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_json(cls, data: Any) -> Origin:
        return cls(str(data["topic"]), int(data["partition"]), int(data["offset"]))


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt in a delivery's history. `error` is ours, never a receiver's body or a URL."""

    number: int
    at_ms: int
    outcome: str  # an attempts-metric outcome: failed, throttled, timeout, unreachable, skipped, ...
    status: int | None
    error: str | None
    duration_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "at": rfc3339(self.at_ms),
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
            "durationMs": self.duration_ms,
        }

    @classmethod
    def from_json(cls, data: Any, at_ms: int) -> AttemptRecord:
        status, error, duration = data.get("status"), data.get("error"), data.get("durationMs")
        return cls(
            number=int(data["attempt"]),
            at_ms=at_ms,
            outcome=str(data["outcome"]),
            status=None if status is None else int(status),
            error=None if error is None else str(error),
            duration_ms=None if duration is None else int(duration),
        )


def history_to_json(history: Iterable[AttemptRecord]) -> list[dict[str, Any]]:
    return [{**entry.to_json(), "atMs": entry.at_ms} for entry in history]


def history_from_json(data: Any) -> tuple[AttemptRecord, ...]:
    return tuple(AttemptRecord.from_json(item, int(item["atMs"])) for item in data)


@dataclass(frozen=True, slots=True)
class Parked:
    """The delivery state a record in a retry tier carries."""

    attempts: int  # made so far; the next is attempts + 1
    not_before_ms: int
    origin: Origin
    history: tuple[AttemptRecord, ...] = field(default=())
    subscription_id: str | None = None  # the subscription it is parked for; None: the instance's callback

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            (ATTEMPTS_HEADER, str(self.attempts).encode()),
            (NOT_BEFORE_HEADER, str(self.not_before_ms).encode()),
            (ORIGIN_HEADER, orjson.dumps(self.origin.to_json())),
            (HISTORY_HEADER, orjson.dumps(history_to_json(self.history[-_HISTORY_KEPT:]))),
        ]
        if self.history and self.history[-1].error:
            headers.append((LAST_ERROR_HEADER, self.history[-1].error.encode()))
        if self.subscription_id is not None:
            headers.append((SUBSCRIPTION_HEADER, self.subscription_id.encode()))
        return headers


def delivery_key(instance_id: str, event_id: str, subscription_id: str | None) -> str:
    """The key of an event's dead letter and delivery-history record for one target: the instance's
    callback (`<instanceId>/<eventId>`) or a subscription (`<instanceId>/<eventId>/<subscriptionId>`),
    so each target's outcome is kept apart, in the instance's partition."""
    base = f"{instance_id}/{event_id}"
    return base if subscription_id is None else f"{base}/{subscription_id}"


class ParkedDecodeError(EventDecodeError):
    """A record in a retry tier whose `gw-*` headers are missing or malformed."""


def read_parked(headers: Headers) -> Parked:
    found = {name: value for name, value in headers if name.startswith(_OWN_PREFIX)}
    try:
        return Parked(
            attempts=int(found[ATTEMPTS_HEADER]),
            not_before_ms=int(found[NOT_BEFORE_HEADER]),
            origin=Origin.from_json(orjson.loads(found[ORIGIN_HEADER])),
            history=history_from_json(orjson.loads(found.get(HISTORY_HEADER, b"[]"))),
            subscription_id=found[SUBSCRIPTION_HEADER].decode() if SUBSCRIPTION_HEADER in found else None,
        )
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise ParkedDecodeError(f"retry record headers are malformed: {type(exc).__name__} {exc}") from exc


def event_headers(headers: Headers) -> list[tuple[str, bytes]]:
    """The record's own headers (content type, `ce_*`), without the delivery state."""
    return [(name, value) for name, value in headers if not name.startswith(_OWN_PREFIX)]


@dataclass(frozen=True, slots=True)
class Retry:
    """When the next attempt may start, and in which tier it waits if not in memory."""

    delay: float  # seconds from now, jitter and Retry-After applied
    tier: float
    inline: bool


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule: tuple[float, ...]
    inline_max: float
    retry_after_max: float
    breaker_cooldown: float

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.schedule)

    @property
    def tiers(self) -> tuple[float, ...]:
        """0 (replays), every scheduled delay kept in Kafka, and the breaker's cool-down (parking
        while a circuit is open), rounded to the millisecond that names their topics."""
        kept = {round(delay, 3) for delay in self.schedule if delay > self.inline_max}
        return tuple(sorted({0.0, round(self.breaker_cooldown, 3), *kept}))

    def tier_for(self, delay: float) -> float:
        """The shortest tier at least `delay` long: a record never holds back the later-due ones
        behind it, at the price of waiting up to its tier's delay. Beyond the longest, the longest."""
        tiers = self.tiers
        return next((tier for tier in tiers if tier >= delay), tiers[-1])

    def wait_bound(self, tier: float) -> float:
        """The longest a record of `tier` may be held after it was parked, whatever its header says:
        a record with a far-future `not-before` must not stop its partition for ever."""
        return max(tier * (1 + _JITTER) + 1.0, self.retry_after_max + 1.0)

    @property
    def quiet_after(self) -> float:
        """How long an endpoint's failing streak lasts without a failed attempt: twice the longest a
        retry may wait, so that one event's retries, even late ones, keep its outage going."""
        return 2 * self.wait_bound(self.tiers[-1])

    def next(
        self, attempts: int, *, retry_after: float | None, may_wait_inline: bool, rng: random.Random
    ) -> Retry | None:
        """The retry after `attempts` failed attempts, or None when none is left."""
        if attempts >= self.max_attempts:
            return None
        nominal = self.schedule[attempts - 1]
        delay = nominal * rng.uniform(1 - _JITTER, 1 + _JITTER)
        asked = 0.0 if retry_after is None else min(max(retry_after, 0.0), self.retry_after_max)
        longest = max(nominal, asked)
        inline = may_wait_inline and longest <= self.inline_max
        return Retry(delay=max(delay, asked), tier=self.tier_for(longest), inline=inline)
