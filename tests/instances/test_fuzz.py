"""validate_instance raises nothing but InstanceValidationError, whatever JSON it is given."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InstanceValidationError, Problem
from gateway.instances import apply_patch, validate_instance
from gateway.instances._connection import NOTIFICATION_KEYS, SOURCE_KEYS
from gateway.instances._resources import DATES_KEYS, RESOURCE_KEYS

from .seed_examples import seed_bodies

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
KEYS = st.sampled_from(
    (
        *SOURCE_KEYS,
        *NOTIFICATION_KEYS,
        *RESOURCE_KEYS,
        *DATES_KEYS,
        "element",
        "key",
        "name",
        "tags",
        "configuration",
    )
)
JSON = st.recursive(
    SCALARS
    | st.sampled_from(["true", "false", "15", "-1", "milliseconds", "UTC", "/hubs/crm/x", "https://h/x"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(KEYS | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


def _check(body: object) -> None:
    """Validating `body` returns or raises InstanceValidationError, whose problems all have JSON paths."""
    try:
        validate_instance(body)
    except InstanceValidationError as exc:
        problems: tuple[Problem, ...] = exc.problems
    else:
        problems = ()
    assert all(problem.path.startswith("$") for problem in problems)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json(body: object) -> None:
    _check(body)


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_any_json_as_the_poller_configuration_string(value: object) -> None:
    body = seed_bodies()["2016"]
    body["configuration"]["event.poller.configuration"] = json.dumps(value)
    _check(body)


def _paths(value: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    found = []
    for key, item in value.items():
        found.append((*prefix, key))
        found.extend(_paths(item, (*prefix, key)))
    return found


SEED = seed_bodies()
SEED_PATHS = sorted({(name, *path) for name, body in SEED.items() for path in _paths(body)})


def _patch_at(path: tuple[str, ...], value: object) -> dict[str, Any]:
    patch: Any = value
    for key in reversed(path):
        patch = {key: patch}
    return dict(patch)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SEED_PATHS), JSON), min_size=1, max_size=3))
def test_mutated_seed(mutations: list[tuple[tuple[str, ...], object]]) -> None:
    body: dict[str, Any] = SEED[mutations[0][0][0]]
    for (_name, *path), value in mutations:
        body = apply_patch(body, _patch_at(tuple(path), value))  # a None value deletes the key
    _check(body)
