"""The instance form read into a Cloud Elements instance body, and problems put beside fields."""

from __future__ import annotations

import json
from typing import Any

from multidict import MultiDict, MultiDictProxy

from gateway.api.console._form import MODIFIEDON, place_problems, read_form, seed_resource
from gateway.errors import Problem
from gateway.instances import MASK

STORED: dict[str, Any] = {
    "element": {"key": "dynamicscrm"},
    "name": "stored",
    "configuration": {
        "user.username": "u",
        "user.password": "stored-password",
        "event.notification.signature.key": "stored-key",
        "event.poller.timezone": "Europe/Paris",
        "event.poller.configuration": json.dumps({"accounts": seed_resource("accounts")}),
    },
}


def posted(**fields: str | list[str]) -> MultiDictProxy[str]:
    items: list[tuple[str, str]] = []
    for key, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            items.append((key.replace("__", "."), one))
    return MultiDictProxy(MultiDict(items))


def test_a_masked_secret_keeps_the_stored_one_and_unshown_keys_stay() -> None:
    form = posted(
        name="edited",
        user__username="u",
        user__password=MASK,
        event__notification__signature__key="new-key",
        resources="accounts",
        **{"resource.accounts": json.dumps(seed_resource("accounts"))},
    )
    state, body = read_form(form, before=STORED)
    assert state.problems == {}
    configuration = body["configuration"]
    assert configuration["user.password"] == "stored-password"
    assert configuration["event.notification.signature.key"] == "new-key"
    assert configuration["event.poller.timezone"] == "Europe/Paris"
    assert body["element"] == {"key": "dynamicscrm"}
    assert list(configuration["event.poller.configuration"]) == ["accounts"]


def test_an_emptied_field_removes_its_key_and_the_switch_off_is_false() -> None:
    state, body = read_form(posted(name="n", user__username=""), before=STORED)
    assert "user.username" not in body["configuration"]
    assert body["configuration"]["event.notification.enabled"] == "false"
    assert body["configuration"]["event.poller.configuration"] == {}
    assert state.problems == {}


def test_the_modifiedon_choice_rewrites_the_seeds_queries_only() -> None:
    own = {**seed_resource("contacts"), "url": "/hubs/crm/contacts?where=statecode = 0"}
    form = posted(
        name="n",
        detection="modifiedon",
        resources=["accounts", "contacts"],
        **{"resource.accounts": json.dumps(seed_resource("accounts")), "resource.contacts": json.dumps(own)},
    )
    _state, body = read_form(form, before=None)
    poller = body["configuration"]["event.poller.configuration"]
    assert poller["accounts"]["url"] == f"/hubs/crm/accounts?where={MODIFIEDON}"
    assert poller["contacts"]["url"] == own["url"]


def test_a_resource_that_does_not_parse_is_a_problem_beside_it() -> None:
    form = posted(name="n", resources="accounts", **{"resource.accounts": "{nope"})
    state, _body = read_form(form, before=None)
    ((path, message),) = state.problems["resource.accounts"]
    assert path == "$.configuration['event.poller.configuration'].accounts"
    assert message.startswith("is not valid JSON")


def test_a_copy_needs_a_new_name() -> None:
    form = posted(name="n", new_resource="accounts", copy_from="accounts", **{"resource.accounts": "{}"})
    state, _body = read_form(form, before=None)
    assert state.problems["new_resource"] == [("", "there is already a resource named 'accounts'")]


def test_each_problem_goes_beside_the_field_of_its_path() -> None:
    form = posted(name="n", resources="accounts", **{"resource.accounts": "{}"})
    state, _body = read_form(form, before=None)
    place_problems(
        state,
        (
            Problem("$.name", "is required"),
            Problem("$.tags[1]", "must be a string, got number"),
            Problem("$.configuration['event.poller.refresh_interval']", "must be a number"),
            Problem("$.configuration['event.poller.configuration'].accounts.idField", "is required"),
            Problem("$.configuration", "credentials are required"),
            Problem("$.element.key", "unknown element key"),
        ),
    )
    assert set(state.problems) == {
        "name",
        "tags",
        "event.poller.refresh_interval",
        "resource.accounts",
        "user.username",
        "",
    }
