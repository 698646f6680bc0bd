from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sources.dynamics.normalise import (
    FORMATTED_VALUE,
    LOOKUP_LOGICAL_NAME,
    epoch_millis,
    normalise,
    normalise_page,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_row_becomes_id_attributes_and_etag() -> None:
    row = {
        "@odata.etag": 'W/"1234"',
        "accountid": "8f2f1a4e-0000-0000-0000-000000000001",
        "name": "Contoso",
        "modifiedon": "2026-01-02T03:04:05Z",
        "createdon": "1970-01-01T00:00:01Z",
        "revenue": 1.5,
        "_ownerid_value": "9a",
        "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
        "statecode@OData.Community.Display.V1.FormattedValue": "Active",
        "statecode": 0,
        "fax": None,
    }
    assert normalise(row, "accountid") == {
        "id": "8f2f1a4e-0000-0000-0000-000000000001",
        "etag": 'W/"1234"',
        "attributes": {
            "accountid": "8f2f1a4e-0000-0000-0000-000000000001",
            "name": "Contoso",
            "modifiedon": 1767323045000,
            "createdon": 1000,
            "revenue": 1.5,
            "_ownerid_value": "9a",
            "statecode": 0,
            "fax": None,
        },
        "formattedValues": {"statecode": "Active"},
        "lookups": {"ownerid": {"id": "9a", "logicalName": "systemuser", "name": None}},
    }


def test_display_texts_and_lookups_leave_the_attributes_for_keys_of_their_own() -> None:
    row = {
        "@odata.etag": 'W/"7"',
        "opportunityid": "o1",
        "_parentaccountid_value": "a1",
        f"_parentaccountid_value@{FORMATTED_VALUE}": "Contoso Ltd",
        f"_parentaccountid_value@{LOOKUP_LOGICAL_NAME}": "account",
        "_parentaccountid_value@Microsoft.Dynamics.CRM.associatednavigationproperty": "parentaccountid",
        "estimatedvalue": 1000.0,
        f"estimatedvalue@{FORMATTED_VALUE}": "$1,000.00",
    }
    record = normalise(row, "opportunityid")
    assert record["attributes"] == {
        "opportunityid": "o1",
        "_parentaccountid_value": "a1",
        "estimatedvalue": 1000.0,
    }
    assert record["formattedValues"] == {
        "_parentaccountid_value": "Contoso Ltd",
        "estimatedvalue": "$1,000.00",
    }
    assert record["lookups"] == {
        "parentaccountid": {"id": "a1", "logicalName": "account", "name": "Contoso Ltd"}
    }
    assert record["etag"] == 'W/"7"'


def test_row_without_its_primary_key_has_no_id_and_no_etag() -> None:
    assert normalise({"name": "x"}, "accountid") == {"id": None, "attributes": {"name": "x"}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-02T03:04:05Z", 1767323045000),
        ("2026-01-02T03:04Z", 1767323040000),
        ("2026-01-02T03:04:05.678Z", 1767323045678),
        ("2026-01-02T04:04:05+01:00", 1767323045000),
        ("2026-01-02T02:04:05-0100", 1767323045000),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_date_times_with_a_zone_become_epoch_millis(value: str, expected: int) -> None:
    assert epoch_millis(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-02",  # an Edm.Date: no time
        "2026-01-02T03:04:05",  # no zone
        "2026-13-02T03:04:05Z",  # shaped like one, but month 13
        "2026-01-02 03:04:05Z",
        "Contoso 2026-01-02T03:04:05Z",
        "AC-123456-2026-01-02T03:04:05Z",
        "",
        "x" * 100,
    ],
)
def test_other_strings_are_not_date_times(value: str) -> None:
    assert epoch_millis(value) is None
    assert normalise({"k": value}, "id")["attributes"] == {"k": value}


def test_page_splits_tombstones_from_changes_only_when_tracking() -> None:
    rows: list[Any] = [
        {"accountid": "a", "modifiedon": "2026-01-02T03:04:05Z"},
        {"@odata.context": "https://org/api/data/v9.2/$metadata#accounts/$deletedEntity", "id": "b"},
        {"id": "c", "reason": "deleted"},
    ]
    records, deleted = normalise_page(rows, "accountid", track_changes=True)
    assert [r["id"] for r in records] == ["a"]
    assert deleted == ["b", "c"]
    records, deleted = normalise_page(rows, "accountid", track_changes=False)
    assert len(records) == 3
    assert deleted == []


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["not", "an", "object"]], "a row is a JSON list"),
        ([{"reason": "deleted"}], "no id"),
    ],
)
def test_page_of_the_wrong_shape_is_refused(rows: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_page(rows, "accountid", track_changes=True)


_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_date_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | _offsets
)


@given(_date_times, st.sampled_from([("seconds", 1_000_000), ("milliseconds", 1000), ("microseconds", 1)]))
def test_any_iso_date_time_with_a_zone_gives_its_exact_epoch_millis(
    moment: datetime, precision: tuple[str, int]
) -> None:
    timespec, unit = precision
    moment = moment.replace(microsecond=moment.microsecond // unit * unit)
    text = moment.isoformat(timespec=timespec).replace("+00:00", "Z")
    assert epoch_millis(text) == (moment - _EPOCH) // timedelta(milliseconds=1)


@given(st.text(max_size=40))
def test_strings_that_are_not_date_times_pass_through(text: str) -> None:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        assert epoch_millis(text) is None


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        max_size=20,
    )
)
def test_normalise_drops_exactly_the_annotations(row: dict[str, Any]) -> None:
    record = normalise(row, "id")
    assert set(record["attributes"]) == {key for key in row if "@" not in key}
    assert record["id"] == row.get("id")
    for key, value in record["attributes"].items():
        if value != row[key]:
            assert isinstance(row[key], str)
            assert value == epoch_millis(row[key])


_COLUMNS = st.from_regex(r"_?[a-z]{1,8}(_value)?", fullmatch=True)


@given(
    st.dictionaries(_COLUMNS, st.text(max_size=8), max_size=6),
    st.dictionaries(_COLUMNS, st.text(max_size=8), max_size=6),
    st.dictionaries(_COLUMNS, st.text(max_size=8), max_size=6),
)
def test_every_display_text_and_lookup_table_is_kept_by_its_column(
    columns: dict[str, str], texts: dict[str, str], tables: dict[str, str]
) -> None:
    row: dict[str, Any] = {
        **columns,
        **{f"{c}@{FORMATTED_VALUE}": t for c, t in texts.items()},
        **{f"{c}@{LOOKUP_LOGICAL_NAME}": t for c, t in tables.items()},
    }
    record = normalise(row, "id")
    assert record.get("formattedValues", {}) == texts
    lookups = {c: t for c, t in tables.items() if c.startswith("_") and c.endswith("_value")}
    assert record.get("lookups", {}) == {
        c[1:-6]: {"id": columns.get(c), "logicalName": t, "name": texts.get(c)} for c, t in lookups.items()
    }
    assert not any("@" in key for key in record["attributes"])
