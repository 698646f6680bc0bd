from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

import gateway.delivery
import gateway.events
from gateway.delivery import render_body
from gateway.errors import EventDecodeError
from gateway.events import ChangeEvent, Mode
from tests._events import PolledChange, encode

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
_REGISTRY: Registry[Any] = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema))
    for schema in (json.loads(path.read_text()) for path in SCHEMAS.glob("*.schema.json"))
)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(
        schema, registry=_REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


ELEMENTS = _validator("webhook-elements.schema.json")
CLOUDEVENTS = _validator("webhook-cloudevents.schema.json")


def _event(**changes: Any) -> PolledChange:
    fields: dict[str, Any] = {
        "instance_id": "inst-1",
        "instance_name": "Contoso CRM",
        "element_key": "dynamicscrmadfs",
        "tags": ["prod", "eu"],
        "hub": "crm",
        "object_type": "accounts",
        "object_id": "6a8e4b3c-0000-0000-0000-000000000001",
        "event_type": "UPDATED",
        "time_ms": 1_767_225_600_123,
        "version": "1767225600123",
        "raw": {"id": "6a8e4b3c-0000-0000-0000-000000000001", "attributes": {"name": "Contoso"}},
    }
    fields.update(changes)
    return PolledChange(**fields)


def _read_back(event: PolledChange, mode: Mode = "structured") -> ChangeEvent:
    """The event as the deliverer gets it: encoded to a Kafka record and decoded again."""
    return ChangeEvent.decode(*encode(event, mode))


def test_the_exported_members_are_exactly_the_public_names() -> None:
    members = vars(gateway.delivery)
    public = {name for name in members if not name.startswith("_") and name != "annotations"}
    public -= {name for name, member in members.items() if isinstance(member, ModuleType)}  # submodules
    assert sorted(gateway.delivery.__all__) == sorted(public)


def test_the_elements_body_is_a_cloud_elements_notification_of_one_event() -> None:
    event = _event()
    body = orjson.loads(render_body(_read_back(event), "elements"))
    assert body == {
        "message": {
            "eventId": event.id,
            "instanceId": "inst-1",
            "instanceName": "Contoso CRM",
            "instanceTags": ["prod", "eu"],
            "elementKey": "dynamicscrmadfs",
            "events": [
                {
                    "eventType": "UPDATED",
                    "objectId": "6a8e4b3c-0000-0000-0000-000000000001",
                    "objectType": "accounts",
                    "elementKey": "dynamicscrmadfs",
                    "date": "2026-01-01T00:00:00.123Z",
                }
            ],
            "raw": {"id": "6a8e4b3c-0000-0000-0000-000000000001", "attributes": {"name": "Contoso"}},
        }
    }
    ELEMENTS.validate(body)


def test_the_cloudevents_body_is_the_event_unchanged() -> None:
    read_back = _read_back(_event(snapshot=True))
    body = render_body(read_back, "cloudevents")
    assert orjson.loads(body) == read_back.envelope
    CLOUDEVENTS.validate(orjson.loads(body))


def test_both_kafka_modes_render_the_same_elements_body() -> None:
    event = _event(event_type="DELETED", raw={"id": "x"})
    assert render_body(_read_back(event, "binary"), "elements") == render_body(_read_back(event), "elements")


def test_the_cloudevents_schema_is_the_change_event_schema() -> None:
    body = orjson.loads(render_body(_read_back(_event()), "cloudevents"))
    body["type"] = "not a type"
    assert not CLOUDEVENTS.is_valid(body)


@pytest.mark.parametrize(
    "broken",
    [{"data": None}, {"data": {"eventType": "CREATED"}}, {"data": {"instanceId": "inst-1"}}, {}],
)
def test_an_event_without_the_fields_of_a_notification_is_a_decode_error(broken: dict[str, Any]) -> None:
    event = {**_read_back(_event()).envelope, **broken}
    if not broken:
        del event["data"]
    with pytest.raises(EventDecodeError, match=event["id"]):
        render_body(ChangeEvent.decode(orjson.dumps(event), []), "elements")


_names = st.text(st.characters(codec="utf-8"))
_slugs = st.from_regex(r"\A[a-z0-9_-]{1,12}\Z")
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
    max_leaves=8,
)
_events = st.builds(
    PolledChange,
    instance_id=st.from_regex(r"\A[^/\n]{1,20}\Z"),
    instance_name=_names,
    element_key=_names,
    tags=st.lists(_names, max_size=3),
    hub=_slugs,
    object_type=_slugs,
    object_id=_names.filter(bool),
    event_type=st.sampled_from(["CREATED", "UPDATED", "DELETED"]),
    time_ms=st.integers(0, 253402300799000),  # to the end of year 9999
    version=_names,
    raw=st.dictionaries(_names, _json, max_size=4),
    snapshot=st.booleans(),
)


@given(event=_events)
def test_every_event_renders_to_valid_bodies_of_both_formats(event: PolledChange) -> None:
    read_back = _read_back(event)
    elements = orjson.loads(render_body(read_back, "elements"))
    ELEMENTS.validate(elements)
    assert elements["message"]["eventId"] == event.id
    assert elements["message"]["raw"] == read_back.data["raw"]
    cloudevents = orjson.loads(render_body(read_back, "cloudevents"))
    CLOUDEVENTS.validate(cloudevents)
    assert cloudevents == read_back.envelope


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_changed_columns_and_previous_values_reach_both_bodies_and_resync_survives_binary_mode(
    mode: Mode,
) -> None:
    encoder = gateway.events.EventEncoder(
        instance_id="inst-1",
        instance_name="Contoso CRM",
        element_key="dynamicscrmadfs",
        tags=["prod"],
        hub="crm",
        object_type="accounts",
        mode=mode,
    )
    _key, value, headers = encoder.encode(
        object_id="row-1",
        event_type="UPDATED",
        time_ms=1_767_225_600_000,
        version="1767225600000",
        raw={"id": "row-1", "attributes": {"name": "New"}},
        resync=True,
        changed=["name"],
        previous={"name": "Old"},
    )
    event = ChangeEvent.decode(value, headers)
    assert event.envelope["resync"] is True
    elements = orjson.loads(render_body(event, "elements"))
    ELEMENTS.validate(elements)
    (item,) = elements["message"]["events"]
    assert (item["changedAttributes"], item["previous"]) == (["name"], {"name": "Old"})
    cloudevent = orjson.loads(render_body(event, "cloudevents"))
    CLOUDEVENTS.validate(cloudevent)
    assert cloudevent["data"]["changedAttributes"] == ["name"]
