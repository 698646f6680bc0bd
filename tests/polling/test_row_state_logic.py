"""The pure parts of the row state: digests, changed columns, keys, staging."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.polling.row_state import (
    RowState,
    RowStateError,
    RowStates,
    Shapes,
    changed_columns,
    decode_state,
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


def _state(row: dict[str, Any], *, keep_values: bool = False) -> RowState:
    return Shapes(_IGNORED).state_of(row, keep_values=keep_values)


def _expected_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    missing = object()
    return sorted(
        name
        for name in before.keys() | after.keys()
        if name not in _IGNORED
        and (
            before.get(name, missing) is missing
            or after.get(name, missing) is missing
            or orjson.dumps(before[name]) != orjson.dumps(after[name])
        )
    )


@given(_rows, _rows)
def test_changed_columns_are_exactly_the_columns_whose_json_differs(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    # A digest collision (a chance of 2**-32 per changed column) would hide one.
    assert changed_columns(_state(before), _state(after)) == _expected_changes(before, after)


@given(_rows, st.data())
def test_rows_of_one_shape_compare_their_packed_digests_to_the_same_changed_columns(
    before: dict[str, Any], data: st.DataObject
) -> None:
    """The same columns in the same order (one shared shape), some of their values changed."""
    after = {
        name: data.draw(_values) if data.draw(st.booleans()) else value for name, value in before.items()
    }
    shapes = Shapes(_IGNORED)
    old, new = shapes.state_of(before, keep_values=False), shapes.state_of(after, keep_values=False)
    assert old.columns is new.columns
    assert changed_columns(old, new) == _expected_changes(before, after)


@given(_rows)
def test_a_row_compared_with_itself_has_no_changed_columns(row: dict[str, Any]) -> None:
    assert changed_columns(_state(row), _state(dict(row))) == []
    assert changed_columns(_state(row), _state(dict(reversed(row.items())))) == []  # in another order


def test_the_updated_date_and_bookkeeping_columns_are_not_compared() -> None:
    before = {"name": "a", "modifiedon": 1, "versionnumber": 7, "_modifiedby_value": "u1"}
    after = {"name": "a", "modifiedon": 2, "versionnumber": 8, "_modifiedby_value": "u2"}
    assert changed_columns(_state(before), _state(after)) == []
    assert _state(after).columns == ("name",)


def test_a_digest_is_the_crc32_of_the_columns_json() -> None:
    """What the topic holds: `{"v": 1, "h": {column: crc32 of its JSON}}`, readable without the gateway."""
    row = {"name": "Contoso", "revenue": 12.5, "modifiedon": 3}
    assert orjson.loads(encode_state(_state(row))) == {
        "v": 1,
        "h": {"name": zlib.crc32(b'"Contoso"'), "revenue": zlib.crc32(b"12.5")},
    }


@given(st.text(), st.text(), st.text())
def test_row_keys_round_trip_whatever_the_names(instance_id: str, resource: str, row_id: str) -> None:
    assert parse_row_key(row_key(instance_id, resource, row_id).decode()) == (instance_id, resource, row_id)


@given(_rows, st.booleans())
def test_states_round_trip(row: dict[str, Any], keep: bool) -> None:
    state = _state(row, keep_values=keep)
    assert decode_state(encode_state(state), row_id="r") == state


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[]", b'{"v": 2, "h": {}}', b'{"v": 1}', b'{"v": 1, "h": {"name": "abc"}}'],
)
def test_an_unreadable_state_is_an_error_naming_its_row_never_an_empty_one(value: bytes) -> None:
    with pytest.raises(RowStateError, match="row 'row-7'"):
        decode_state(value, row_id="row-7")


@pytest.mark.parametrize("key", ["not json", '{"a": 1, "b": 2, "c": 3}', '["i", "r"]', '["i", "r", 7]'])
def test_an_unreadable_row_key_is_an_error_naming_the_key(key: str) -> None:
    with pytest.raises(RowStateError, match="unreadable row-state key"):
        parse_row_key(key)


def test_staged_states_become_committed_only_on_commit() -> None:
    one, two, three = (_state({"name": name}) for name in ("one", "two", "three"))
    rows = RowStates({"a": encode_state(one), "b": encode_state(two)})  # as read back from the topic
    rows.stage("a", three)
    rows.stage("b", None)
    assert (rows.get("a"), rows.get("b"), rows.has("b")) == (three, None, False)
    rows.discard()
    assert (rows.get("a"), rows.get("b"), rows.has("b")) == (one, two, True)
    rows.stage("a", three)
    rows.stage("b", None)
    rows.commit()
    assert (rows.get("a"), rows.get("b"), sorted(rows.ids())) == (three, None, ["a"])
