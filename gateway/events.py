"""The change event: a CloudEvents 1.0 envelope, as written to Kafka and read back by the deliverer.

Structured mode (the default) puts the whole event in the record value with
`content-type: application/cloudevents+json; charset=UTF-8`. Binary mode puts the attributes in
`ce_*` headers and only `data` in the value (CloudEvents Kafka protocol binding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    """One change event as the deliverer reads it back: the attributes it acts on, and the event as
    read (`envelope`, the structured CloudEvent, `data` included), which the `cloudevents` body and a
    dead letter carry unchanged. Kept, not copied: `data` is the envelope's own."""

    id: str
    instance_id: str  # data.instanceId
    type: str  # "" when absent
    subject: str  # "" when absent
    time: str | None  # RFC 3339, as written; None when absent
    data: Mapping[str, Any] = field(repr=False)
    envelope: Mapping[str, Any] = field(repr=False)

    @classmethod
    def decode(cls, value: bytes, headers: Sequence[tuple[str, bytes]]) -> ChangeEvent:
        """A record of either mode, its `gw-*` delivery headers left out. Raises `EventDecodeError`,
        naming the field at fault, for a record that is not a change event of ours."""
        envelope = _envelope(value, headers)
        identity = envelope.get("id")
        if not isinstance(identity, str):
            raise EventDecodeError(
                "record is not a change event: `id` is missing or not a string", field="id"
            )
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise EventDecodeError(
                f"event {identity!r} is not a change event: `data` is missing or not an object", field="data"
            )
        instance_id = data.get("instanceId")
        if not isinstance(instance_id, str):
            raise EventDecodeError(
                f"event {identity!r} is not a change event: `data.instanceId` is missing or not a string",
                field="data.instanceId",
            )
        moment = envelope.get("time")
        return cls(
            id=identity,
            instance_id=instance_id,
            type=str(envelope.get("type", "")),
            subject=str(envelope.get("subject", "")),
            time=None if moment is None else str(moment),
            data=data,
            envelope=envelope,
        )


def event_id(instance_id: str, object_type: str, object_id: str, event_type: str, version: str) -> str:
    basis = "\x1f".join((instance_id, object_type, object_id, event_type, version))
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


_NAIVE_EPOCH = datetime(1970, 1, 1)  # naive: rfc3339 writes the Z


def rfc3339(epoch_ms: int) -> str:
    # Integer arithmetic: the float of epoch_ms / 1000 misrounds milliseconds after the year 2255.
    return (_NAIVE_EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds") + "Z"


class EventEncoder:
    """Encodes the events of one instance x resource. What they share is worked out once, so that each
    event costs its id, its date and one JSON serialisation."""

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
        """The Kafka key, value and headers of one event, which `ChangeEvent.decode` reads back.

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


def _envelope(value: bytes, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """A record of either mode as one structured CloudEvent."""
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
        raise EventDecodeError(
            "record is not a CloudEvents 1.0 structured event: no `specversion` of 1.0", field="specversion"
        )
    return envelope
