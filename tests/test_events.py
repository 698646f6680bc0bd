from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import EventDecodeError
from gateway.events import ChangeEvent, Mode, rfc3339
from tests._events import PolledChange, encode, encoder_of

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "schemas" / "change-event.schema.json").read_text()
)


def _event(**changes: object) -> PolledChange:
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
    return PolledChange(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["structured", "binary"])
@pytest.mark.parametrize("snapshot", [False, True])
def test_both_kafka_bindings_decode_to_the_same_valid_cloudevent(mode: Mode, snapshot: bool) -> None:
    event = _event(snapshot=snapshot)
    value, headers = encode(event, mode)
    read_back = ChangeEvent.decode(value, headers)
    decoded = read_back.envelope
    jsonschema.validate(decoded, SCHEMA)
    assert (read_back.id, read_back.instance_id) == (event.id, "i-1")
    assert (read_back.type, read_back.subject) == ("crm.accounts.updated", event.object_id)
    assert read_back.time == "2026-01-01T00:00:00.123Z"
    assert read_back.data is decoded["data"]
    assert decoded["source"] == "/instances/i-1"
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
        decoded = ChangeEvent.decode(value, [])
    except EventDecodeError:
        return
    assert decoded.envelope["specversion"] == "1.0"


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": 7}, "id"),
        ({"data": None}, "data"),
        ({"data": {"eventType": "CREATED"}}, "data.instanceId"),
        ({"data": {"instanceId": ["i-1"]}}, "data.instanceId"),
    ],
)
def test_a_cloudevent_that_is_not_a_change_event_of_ours_is_a_decode_error_naming_the_field(
    broken: dict[str, object], field: str
) -> None:
    value, _headers = encode(_event())
    envelope = {**orjson.loads(value), **broken}
    with pytest.raises(EventDecodeError, match=re.escape(f"`{field}`")) as raised:
        ChangeEvent.decode(orjson.dumps(envelope), [])
    assert raised.value.field == field


def test_a_change_event_without_a_time_type_or_subject_decodes_with_none_and_empty_ones() -> None:
    value, _headers = encode(_event())
    envelope = orjson.loads(value)
    for name in ("time", "type", "subject"):
        del envelope[name]
    event = ChangeEvent.decode(orjson.dumps(envelope), [])
    assert (event.time, event.type, event.subject) == (None, "", "")


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_the_time_is_exact_to_the_millisecond(epoch_ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    assert rfc3339(epoch_ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_the_encoder_of_a_resource_gives_each_event_its_key_and_its_encoding(mode: Mode) -> None:
    event = _event(snapshot=True)
    key, value, headers = encoder_of(event, mode).encode(
        object_id=event.object_id,
        event_type=event.event_type,
        time_ms=event.time_ms,
        version=event.version,
        raw=event.raw,
        snapshot=True,
    )
    assert (key, value, headers) == (event.key, *encode(event, mode))
    assert ChangeEvent.decode(value, headers).id == event.id
