from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import EventDecodeError
from gateway.events import ChangeEvent, EventEncoder, Mode, decode, encode, rfc3339

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "schemas" / "change-event.schema.json").read_text()
)


def _event(**changes: object) -> ChangeEvent:
    fields: dict[str, object] = {
        "instance_id": "i-1",
        "instance_name": "CRM",
        "element_key": "dynamicscrmadfs",
        "tags": ("a",),
        "hub": "crm",
        "object_type": "accounts",
        "object_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "event_type": "UPDATED",
        "time_ms": 1_767_225_600_123,
        "version": "1767225600123",
        "raw": {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "attributes": {"name": "Contoso"}},
    }
    fields.update(changes)
    return ChangeEvent(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["structured", "binary"])
@pytest.mark.parametrize("snapshot", [False, True])
def test_both_kafka_bindings_decode_to_the_same_valid_cloudevent(mode: Mode, snapshot: bool) -> None:
    event = _event(snapshot=snapshot)
    value, headers = encode(event, mode)
    decoded = decode(value, headers)
    jsonschema.validate(decoded, SCHEMA)
    assert decoded["id"] == event.id
    assert decoded["type"] == "crm.accounts.updated"
    assert decoded["source"] == "/instances/i-1"
    assert decoded["time"] == "2026-01-01T00:00:00.123Z"
    assert decoded["data"]["raw"]["attributes"] == {"name": "Contoso"}
    assert decoded.get("snapshot", False) is snapshot
    content_type = dict(headers)["content-type"]
    assert content_type.startswith(
        b"application/cloudevents+json" if mode == "structured" else b"application/json"
    )


def test_the_id_is_the_same_for_a_re_polled_change_and_differs_for_another_version() -> None:
    assert _event().id == _event().id
    assert _event().id != _event(version="1767225600124").id
    assert _event().id != _event(event_type="DELETED").id
    assert _event().key == b"i-1:0f8fad5b-d9cb-469f-a165-70867728950e"


@given(value=st.binary(max_size=200))
def test_foreign_records_raise_a_decode_error(value: bytes) -> None:
    try:
        decoded = decode(value, [])
    except EventDecodeError:
        return
    assert decoded["specversion"] == "1.0"


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_the_time_is_exact_to_the_millisecond(epoch_ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    assert rfc3339(epoch_ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_the_encoder_of_a_resource_gives_each_event_its_key_and_its_encoding(mode: Mode) -> None:
    event = _event(snapshot=True)
    encoder = EventEncoder(
        instance_id=event.instance_id,
        instance_name=event.instance_name,
        element_key=event.element_key,
        tags=event.tags,
        hub=event.hub,
        object_type=event.object_type,
        mode=mode,
    )
    key, value, headers = encoder.encode(
        object_id=event.object_id,
        event_type=event.event_type,
        time_ms=event.time_ms,
        version=event.version,
        raw=event.raw,
        snapshot=True,
    )
    assert (key, value, headers) == (event.key, *encode(event, mode))
    assert decode(value, headers)["id"] == event.id
