"""The change event: a CloudEvents 1.0 envelope, as written to Kafka and read back by the deliverer.

Structured mode (the default) puts the whole event in the record value with
`content-type: application/cloudevents+json; charset=UTF-8`. Binary mode puts the attributes in
`ce_*` headers and only `data` in the value (CloudEvents Kafka protocol binding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from gateway.errors import EventDecodeError

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
Mode = Literal["structured", "binary"]
Headers = list[tuple[str, bytes]]


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
    version: str  # what tells this change from others of the object: its updated date and etag, or a cursor
    raw: Mapping[str, Any]
    snapshot: bool = False

    @property
    def id(self) -> str:
        """Deterministic, so that re-polling the same change yields the same id."""
        return event_id(self.instance_id, self.object_type, self.object_id, self.event_type, self.version)

    @property
    def key(self) -> bytes:
        """Kafka key: the changes to one object stay in one partition, in order."""
        return f"{self.instance_id}:{self.object_id}".encode()

    @property
    def type(self) -> str:
        return f"{self.hub}.{self.object_type}.{self.event_type.lower()}"

    def data(self) -> dict[str, Any]:
        return EventEncoder.of(self).data(self.object_id, self.event_type, rfc3339(self.time_ms), self.raw)

    def attributes(self) -> dict[str, Any]:
        return EventEncoder.of(self).attributes(
            self.object_id, self.event_type, rfc3339(self.time_ms), self.snapshot, self.id
        )


def event_id(instance_id: str, object_type: str, object_id: str, event_type: str, version: str) -> str:
    basis = "\x1f".join((instance_id, object_type, object_id, event_type, version))
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


_NAIVE_EPOCH = datetime(1970, 1, 1)  # naive: rfc3339 writes the Z


def rfc3339(epoch_ms: int) -> str:
    # Integer arithmetic: the float of epoch_ms / 1000 misrounds milliseconds after the year 2255.
    return (_NAIVE_EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds") + "Z"


def encode(event: ChangeEvent, mode: Mode = "structured") -> tuple[bytes, Headers]:
    """The Kafka record value and headers of one event."""
    _key, value, headers = EventEncoder.of(event, mode).encode(
        object_id=event.object_id,
        event_type=event.event_type,
        time_ms=event.time_ms,
        version=event.version,
        raw=event.raw,
        snapshot=event.snapshot,
    )
    return value, headers


class EventEncoder:
    """Encodes the events of one instance x resource. What they share is worked out once, so that each
    event costs its id, its date and one JSON serialisation; `encode(ChangeEvent(...))` uses it too."""

    __slots__ = (
        "_source",
        "_type_prefix",
        "element_key",
        "instance_id",
        "instance_name",
        "mode",
        "object_type",
        "tags",
    )

    def __init__(
        self,
        *,
        instance_id: str,
        instance_name: str,
        element_key: str,
        tags: Sequence[str],
        hub: str,
        object_type: str,
        mode: Mode = "structured",
    ) -> None:
        self.instance_id = instance_id
        self.instance_name = instance_name
        self.element_key = element_key
        self.tags = tuple(tags)
        self.object_type = object_type
        self.mode = mode
        self._source = f"/instances/{instance_id}"
        self._type_prefix = f"{hub}.{object_type}."

    @classmethod
    def of(cls, event: ChangeEvent, mode: Mode = "structured") -> EventEncoder:
        return cls(
            instance_id=event.instance_id,
            instance_name=event.instance_name,
            element_key=event.element_key,
            tags=event.tags,
            hub=event.hub,
            object_type=event.object_type,
            mode=mode,
        )

    def encode(
        self,
        *,
        object_id: str,
        event_type: str,
        time_ms: int,
        version: str,
        raw: Mapping[str, Any],
        snapshot: bool = False,
        resync: bool = False,
        changed: Sequence[str] | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, bytes, Headers]:
        """The Kafka key, value and headers of one event: what `encode` gives for the same ChangeEvent.

        `changed` (an UPDATED event's columns that differ from the row's last published state, None
        when that state is unknown) and `previous` (their values before) go into `data` as
        `changedAttributes` and `previous`; `resync` marks the events of a resynchronisation.
        """
        key = f"{self.instance_id}:{object_id}".encode()
        moment = rfc3339(time_ms)
        identity = event_id(self.instance_id, self.object_type, object_id, event_type, version)
        envelope = self.attributes(object_id, event_type, moment, snapshot, identity)
        if resync:
            envelope["resync"] = True
        data = self.data(object_id, event_type, moment, raw)
        if changed is not None:
            data["changedAttributes"] = changed
            if previous is not None:
                data["previous"] = previous
        if self.mode == "structured":
            envelope["data"] = data
            return key, orjson.dumps(envelope), [("content-type", STRUCTURED_CONTENT_TYPE)]
        headers: Headers = [(f"ce_{name}", _header_value(value)) for name, value in envelope.items()]
        headers.append(("content-type", b"application/json"))
        return key, orjson.dumps(data), headers

    def attributes(
        self, object_id: str, event_type: str, moment: str, snapshot: bool, identity: str
    ) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": identity,
            "source": self._source,
            "type": self._type_prefix + event_type.lower(),
            "subject": object_id,
            "time": moment,
            "datacontenttype": "application/json",
        }
        if snapshot:
            attrs["snapshot"] = True
        return attrs

    def data(self, object_id: str, event_type: str, moment: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "eventType": event_type,
            "objectType": self.object_type,
            "objectId": object_id,
            "elementKey": self.element_key,
            "instanceId": self.instance_id,
            "instanceName": self.instance_name,
            "tags": list(self.tags),
            "date": moment,
            "raw": raw,
        }


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
            for flag in ("snapshot", "resync"):
                if flag in envelope:
                    # Binary mode carries every attribute as a string; ours are booleans.
                    envelope[flag] = envelope[flag] == "true"
            envelope["data"] = orjson.loads(value)
            return envelope
        envelope = orjson.loads(value)
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise EventDecodeError(f"record is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("specversion") != SPEC_VERSION:
        raise EventDecodeError("record is not a CloudEvents 1.0 structured event")
    return envelope
