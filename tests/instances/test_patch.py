from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gateway.errors import InstanceValidationError, Problem
from gateway.instances import apply_patch, validate_instance

from .cases import CREDENTIALS
from .seed_examples import seed_bodies, with_poller_as_string

# RFC 7396, Appendix A, the examples whose target and patch are objects.
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_EXAMPLES)
def test_rfc_7396_examples(target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]) -> None:
    before = copy.deepcopy((target, patch))
    assert apply_patch(target, patch) == result
    assert (target, patch) == before


@pytest.mark.parametrize("patch", [["c"], None, "bar", 1])
def test_a_patch_must_be_an_object(patch: object) -> None:
    with pytest.raises(InstanceValidationError) as caught:
        apply_patch({"a": "b"}, patch)
    assert caught.value.problems[0].path == "$"


def test_patching_a_resource_of_a_stored_string_configuration() -> None:
    stored = with_poller_as_string(seed_bodies()["2016"])
    patch = {"configuration": {"event.poller.configuration": {"notes": None, "accounts": {"pageSize": 100}}}}

    merged = apply_patch(stored, patch)

    resources = validate_instance(merged).instance.resources
    assert "notes" not in [r.name for r in resources]
    assert next(r for r in resources if r.name == "accounts").page_size == 100
    assert len(resources) == 6


def test_stored_headers_string_is_merged_into() -> None:
    stored = {"configuration": {"event.notification.callback.headers": json.dumps({"X-A": "1", "X-B": "2"})}}
    merged = apply_patch(stored, {"configuration": {"event.notification.callback.headers": {"X-B": None}}})
    assert merged["configuration"]["event.notification.callback.headers"] == {"X-A": "1"}


def test_a_broken_stored_string_is_replaced() -> None:
    stored = {"configuration": {"event.poller.configuration": "{broken"}}
    merged = apply_patch(stored, {"configuration": {"event.poller.configuration": {"accounts": {"a": None}}}})
    assert merged["configuration"]["event.poller.configuration"] == {"accounts": {}}


def test_a_string_patch_replaces_the_object() -> None:
    merged = apply_patch(seed_bodies()["2016"], {"configuration": {"event.poller.configuration": "{}"}})
    assert merged["configuration"]["event.poller.configuration"] == "{}"


def test_removing_credentials_fails_validation_afterwards() -> None:
    merged = apply_patch(
        seed_bodies()["2016"], {"configuration": {"user.username": None, "user.password": None}}
    )
    with pytest.raises(InstanceValidationError) as caught:
        validate_instance(merged)
    assert caught.value.problems == (Problem("$.configuration", CREDENTIALS),)
