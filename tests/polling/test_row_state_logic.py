"""The pure parts of the row state: digests, changed columns, keys, staging."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.polling.row_state import (
    RowStateError,
    RowStates,
    changed_columns,
    decode_state,
    digests,
    encode_state,
    ignored_columns,
    parse_row_key,
    row_key,
)

# Values as a JSON body gives them: orjson reads no integer beyond 64 bits, and no infinity.
_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_rows = st.dictionaries(st.text(min_size=1, max_size=8), _values, max_size=10)
_IGNORED = ignored_columns("attributes.modifiedon")


@given(_rows, _rows)
def test_changed_columns_are_exactly_the_columns_whose_json_differs(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    missing = object()
    expected = sorted(
        name
        for name in before.keys() | after.keys()
        if name not in _IGNORED
        and (
            before.get(name, missing) is missing
            or after.get(name, missing) is missing
            or orjson.dumps(before[name]) != orjson.dumps(after[name])
        )
    )
    # A digest collision (a chance of 2**-32 per changed column) would hide one.
    assert changed_columns(digests(before, _IGNORED), digests(after, _IGNORED)) == expected


@given(_rows)
def test_a_row_compared_with_itself_has_no_changed_columns(row: dict[str, Any]) -> None:
    assert changed_columns(digests(row, _IGNORED), digests(dict(row), _IGNORED)) == []


def test_the_updated_date_and_bookkeeping_columns_are_not_compared() -> None:
    before = {"name": "a", "modifiedon": 1, "versionnumber": 7, "_modifiedby_value": "u1"}
    after = {"name": "a", "modifiedon": 2, "versionnumber": 8, "_modifiedby_value": "u2"}
    assert changed_columns(digests(before, _IGNORED), digests(after, _IGNORED)) == []


@given(st.text(), st.text(), st.text())
def test_row_keys_round_trip_whatever_the_names(instance_id: str, resource: str, row_id: str) -> None:
    assert parse_row_key(row_key(instance_id, resource, row_id).decode()) == (instance_id, resource, row_id)


@given(_rows, st.booleans())
def test_states_round_trip(row: dict[str, Any], keep: bool) -> None:
    hashed = digests(row, _IGNORED)
    values = {name: row[name] for name in hashed} if keep else None
    assert decode_state(encode_state(hashed, values), row_id="r") == (hashed, values)


@pytest.mark.parametrize("value", [b"not json", b"[]", b'{"v": 2, "h": {}}', b'{"v": 1}'])
def test_an_unreadable_state_is_an_error_naming_its_row_never_an_empty_one(value: bytes) -> None:
    with pytest.raises(RowStateError, match="row 'row-7'"):
        decode_state(value, row_id="row-7")


@pytest.mark.parametrize("key", ["not json", '{"a": 1, "b": 2, "c": 3}', '["i", "r"]', '["i", "r", 7]'])
def test_an_unreadable_row_key_is_an_error_naming_the_key(key: str) -> None:
    with pytest.raises(RowStateError, match="unreadable row-state key"):
        parse_row_key(key)


def test_staged_states_become_committed_only_on_commit() -> None:
    rows = RowStates({"a": b"1", "b": b"2"})
    rows.stage("a", b"3")
    rows.stage("b", None)
    assert (rows.get("a"), rows.get("b")) == (b"3", None)
    rows.discard()
    assert (rows.get("a"), rows.get("b")) == (b"1", b"2")
    rows.stage("a", b"3")
    rows.stage("b", None)
    rows.commit()
    assert (rows.get("a"), rows.get("b"), sorted(rows.ids())) == (b"3", None, ["a"])
