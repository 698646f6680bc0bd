"""The deliverer's topics: what it reads, where it parks retries, where dead letters go.

- Event topics `<topic_prefix>.<hub>.<objectType>`, found by pattern (new ones within
  `GATEWAY_DELIVERY_METADATA_MAX_AGE_MS`).
- Retry tiers `<state_prefix>.retry.<delay>s`, one per delay: `0s` (replays), each delay of the retry
  schedule above the inline limit, and the circuit breaker's cool-down. Records keep the event's
  key, value and CloudEvents headers, plus `gw-*` headers saying when they are due (`retry.py`).
  Every record of a tier was parked with about the same delay, so the tier is consumed in order and a
  partition waits, paused, until its head is due.
- Dead letters `<state_prefix>.dead-letters`, compacted, keyed `<instanceId>/<eventId>` and
  partitioned by instance id, so one instance's dead letters are read from one partition and a
  replay deletes its entry with a tombstone.
- Delivery state `<state_prefix>.delivery-state`, compacted, keyed by endpoint (`<instanceId>` or
  `<instanceId>/<subscriptionId>`): since when each has been failing, or that it is disabled
  (`endpoint_state.py`).
- Delivery history `<state_prefix>.deliveries`, compacted and time-limited, keyed
  `<instanceId>/<eventId>` and partitioned by instance id: each event's status and attempts
  (`history.py`).

The deliverer's consumer group is `<state_prefix>-deliverer`; it reads the event topics and the retry
tiers with one subscription.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.errors import ConfigError

_RETRY = "retry"


def tier_name(delay: float) -> str:
    """`5s`, `300s`, `0.2s`: plain decimals, no exponent (`+` is not allowed in topic names)."""
    return (f"{delay:.3f}".rstrip("0").rstrip(".") or "0") + "s"


@dataclass(frozen=True, slots=True)
class DeliveryTopics:
    topic_prefix: str
    state_prefix: str
    tiers: tuple[float, ...]  # ascending, 0 first

    @classmethod
    def build(cls, *, topic_prefix: str, state_prefix: str, tiers: Iterable[float]) -> DeliveryTopics:
        if topic_prefix == state_prefix:
            raise ConfigError("GATEWAY_TOPIC_PREFIX and GATEWAY_STATE_TOPIC_PREFIX must differ")
        return cls(topic_prefix, state_prefix, tuple(sorted({0.0, *tiers})))

    @property
    def group_id(self) -> str:
        return f"{self.state_prefix}-deliverer"

    @property
    def dead_letters(self) -> str:
        return f"{self.state_prefix}.dead-letters"

    @property
    def state(self) -> str:
        return f"{self.state_prefix}.delivery-state"

    @property
    def deliveries(self) -> str:
        return f"{self.state_prefix}.deliveries"

    def retry(self, tier: float) -> str:
        return f"{self.state_prefix}.{_RETRY}.{tier_name(tier)}"

    @property
    def replay(self) -> str:
        """Where replayed dead letters go: the tier whose records are due at once."""
        return self.retry(0.0)

    @property
    def retry_topics(self) -> tuple[str, ...]:
        return tuple(self.retry(tier) for tier in self.tiers)

    @property
    def pattern(self) -> str:
        """Event topics and retry tiers. The look-ahead keeps the state topics out when the state
        prefix happens to start with the event prefix (`events` and `events.gw`)."""
        state = re.escape(self.state_prefix)
        events = re.escape(self.topic_prefix)
        return rf"^(?:{state}\.{_RETRY}\.[0-9.]+s|(?!{state}\.){events}\..+)$"

    def tier_of(self, topic: str) -> float | None:
        """The delay of a retry tier topic, or None for an event topic."""
        prefix = f"{self.state_prefix}.{_RETRY}."
        if not topic.startswith(prefix) or not topic.endswith("s"):
            return None
        try:
            return float(topic[len(prefix) : -1])
        except ValueError:
            return None
