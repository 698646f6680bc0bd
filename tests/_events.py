"""Change events built the way a poller builds them, for tests to write to Kafka and read back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.events import ChangeEvent, EventEncoder, Headers, Mode, event_id


@dataclass(frozen=True, slots=True)
class PolledChange:
    """What a poller encodes one event from: `EventEncoder`'s arguments, in one record."""

    instance_id: str
    instance_name: str
    element_key: str
    tags: Sequence[str]
    hub: str
    object_type: str
    object_id: str
    event_type: str  # CREATED, UPDATED or DELETED
    time_ms: int
    version: str
    raw: Mapping[str, Any]
    snapshot: bool = False
    changed: list[str] | None = None  # an UPDATED event's changedAttributes; None: unknown

    @property
    def id(self) -> str:
        return event_id(self.instance_id, self.object_type, self.object_id, self.event_type, self.version)

    @property
    def key(self) -> bytes:
        return f"{self.instance_id}:{self.object_id}".encode()


def encoder_of(change: PolledChange, mode: Mode = "structured") -> EventEncoder:
    return EventEncoder(
        instance_id=change.instance_id,
        instance_name=change.instance_name,
        element_key=change.element_key,
        tags=change.tags,
        hub=change.hub,
        object_type=change.object_type,
        mode=mode,
    )


def encode(change: PolledChange, mode: Mode = "structured") -> tuple[bytes, Headers]:
    """The Kafka record value and headers of one change, as its poller writes them."""
    _key, value, headers = encoder_of(change, mode).encode(
        object_id=change.object_id,
        event_type=change.event_type,
        time_ms=change.time_ms,
        version=change.version,
        raw=change.raw,
        snapshot=change.snapshot,
        changed=change.changed,
    )
    return value, headers


def decode(value: bytes, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """A change event record read back as the structured CloudEvent dict it carries."""
    return dict(ChangeEvent.decode(value, headers).envelope)
