"""The change event: a CloudEvents 1.0 envelope, as written to Kafka and read back by the deliverer.

Structured mode (the default) puts the whole event in the record value with
`content-type: application/cloudevents+json; charset=UTF-8`. Binary mode puts the attributes in
`ce_*` headers and only `data` in the value (CloudEvents Kafka protocol binding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from gateway.errors import GatewayError

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
Mode = Literal["structured", "binary"]
Headers = list[tuple[str, bytes]]


class EventDecodeError(GatewayError):
    """A record on an event topic that is not a change event of ours."""


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    instance_id: str
    instance_name: str
    element_key: str
    tags: Sequence[str]
    hub: str
    object_type: str
    object_id: str
    event_type: str  # CREATED, UPDATED or DELETED
    time_ms: int  # the change's updated date at the source; for deletes, when it was seen
    version: str  # what tells this change from others of the object: its updated date, or a change token
    raw: Mapping[str, Any]
    snapshot: bool = False

    @property
    def id(self) -> str:
        """Deterministic, so that re-polling the same change yields the same id."""
        basis = "\x1f".join(
            (self.instance_id, self.object_type, self.object_id, self.event_type, self.version)
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:32]

    @property
    def key(self) -> bytes:
        """Kafka key: the changes to one object stay in one partition, in order."""
        return f"{self.instance_id}:{self.object_id}".encode()

    @property
    def type(self) -> str:
        return f"{self.hub}.{self.object_type}.{self.event_type.lower()}"

    def data(self) -> dict[str, Any]:
        return {
            "eventType": self.event_type,
            "objectType": self.object_type,
            "objectId": self.object_id,
            "elementKey": self.element_key,
            "instanceId": self.instance_id,
            "instanceName": self.instance_name,
            "tags": list(self.tags),
            "date": rfc3339(self.time_ms),
            "raw": self.raw,
        }

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": f"/instances/{self.instance_id}",
            "type": self.type,
            "subject": self.object_id,
            "time": rfc3339(self.time_ms),
            "datacontenttype": "application/json",
        }
        if self.snapshot:
            attrs["snapshot"] = True
        return attrs


def rfc3339(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(event: ChangeEvent, mode: Mode = "structured") -> tuple[bytes, Headers]:
    """The Kafka record value and headers of one event."""
    if mode == "structured":
        envelope = event.attributes()
        envelope["data"] = event.data()
        return orjson.dumps(envelope), [("content-type", STRUCTURED_CONTENT_TYPE)]
    headers: Headers = [(f"ce_{name}", _header_value(value)) for name, value in event.attributes().items()]
    headers.append(("content-type", b"application/json"))
    return orjson.dumps(event.data()), headers


def _header_value(value: Any) -> bytes:
    return (str(value).lower() if isinstance(value, bool) else str(value)).encode()


def decode(value: bytes, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """A record of either mode back to one structured CloudEvent dict."""
    try:
        header_map = {name: raw.decode() for name, raw in headers}
        if "ce_specversion" in header_map:
            envelope: dict[str, Any] = {
                name[3:]: raw for name, raw in header_map.items() if name.startswith("ce_")
            }
            if "snapshot" in envelope:
                # Binary mode carries every attribute as a string; ours is a boolean.
                envelope["snapshot"] = envelope["snapshot"] == "true"
            envelope["data"] = orjson.loads(value)
            return envelope
        envelope = orjson.loads(value)
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise EventDecodeError(f"record is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("specversion") != SPEC_VERSION:
        raise EventDecodeError("record is not a CloudEvents 1.0 structured event")
    return envelope
