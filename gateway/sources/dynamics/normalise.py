"""Dataverse rows to the gateway's record shape: `{"id": ..., "attributes": {...}, "etag": ...}`.

Runs once per record on the hot path (a few microseconds for a row of 30 columns).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.sources.base import Record

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_SHORTEST = len("2026-01-02T03:04Z")
_LONGEST = 40  # seconds with a long fraction and an offset stay well under this
_DELETED_CONTEXT = "/$deletedEntity"
# The annotations `formattedValues` asks for (Prefer: odata.include-annotations).
FORMATTED_VALUE = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"


def epoch_millis(value: str) -> int | None:
    """Epoch milliseconds of an ISO 8601 date-time with a zone (`2026-01-02T03:04:05Z`, as Dataverse writes
    DateTimeOffset columns), or None when `value` is not one.

    The length and two character positions reject almost every other string before the parser runs.
    """
    if not (_SHORTEST <= len(value) <= _LONGEST and value[10] == "T" and value[4] == "-"):
        return None
    return _zoned_millis(value)


def _zoned_millis(value: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # shaped like a date-time but not one, such as month 13
        return None
    if parsed.tzinfo is None:  # a local time names no instant
        return None
    return (parsed - _EPOCH) // _MILLISECOND


def normalise(row: dict[str, Any], primary_key: str) -> Record:
    """One row as a record; `id` is None when the row lacks its primary key, which the poller skips.

    Every key holding `@` is an OData annotation (column names never contain one), so none stays among
    the attributes: the row's `@odata.etag` becomes the record's `etag`, display texts and lookups their
    own keys, the rest is dropped. `row` itself is left as it was.
    """
    return _adopt(dict(row), primary_key)


def _adopt(row: dict[str, Any], primary_key: str) -> Record:
    """`normalise`, with `row` itself becoming the attributes: its dates are converted and its annotations
    deleted in place, which spares a copy of every row of a page."""
    record: Record = {"id": row.get(primary_key), "attributes": row}
    annotations: list[str] | None = None
    for key, value in row.items():
        if "@" in key:
            if annotations is None:
                annotations = [key]
            else:
                annotations.append(key)
        # epoch_millis's shape check, inline: most values are not date-times, and a call costs more.
        elif (
            type(value) is str
            and _SHORTEST <= len(value) <= _LONGEST
            and value[10] == "T"
            and value[4] == "-"
        ):
            millis = _zoned_millis(value)
            if millis is not None:
                row[key] = millis  # a new value for a key changes no dict's size: safe while iterating
    if annotations is not None:
        _take_annotations(record, row, annotations)
    return record


def _take_annotations(record: Record, row: dict[str, Any], keys: list[str]) -> None:
    """Move a row's annotations out of its columns: the etag to `etag`; display texts, asked for with
    `formattedValues`, to `formattedValues` by column; and each lookup's id, table and name to
    `lookups` under the lookup's name (`_parentaccountid_value` -> `parentaccountid`)."""
    formatted: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for key in keys:
        value = row.pop(key)
        column, _, term = key.partition("@")
        if key == "@odata.etag":
            record["etag"] = value
        elif term == FORMATTED_VALUE:
            formatted[column] = value
        elif term == LOOKUP_LOGICAL_NAME:
            tables[column] = value
    if formatted:
        record["formattedValues"] = formatted
    lookups = {
        column[1:-6]: {"id": row.get(column), "logicalName": table, "name": formatted.get(column)}
        for column, table in tables.items()
        if column.startswith("_") and column.endswith("_value")
    }
    if lookups:
        record["lookups"] = lookups


def _is_tombstone(row: dict[str, Any]) -> bool:
    """A deleted row: `{"@odata.context": ".../$deletedEntity", "id": ..., "reason": "deleted"}`."""
    context = row.get("@odata.context")
    return (type(context) is str and context.endswith(_DELETED_CONTEXT)) or row.get("reason") == "deleted"


def normalise_page(
    rows: list[Any], primary_key: str, *, track_changes: bool
) -> tuple[list[Record], list[str]]:
    """The records and the deleted ids of one page's `value` list.

    Only change tracking returns tombstones, so other pages skip that check. Raises ValueError for a row
    that is not an object, or a tombstone without an id. The rows are taken over: each becomes its
    record's attributes, changed in place (a page is parsed for this call and read by nothing else).
    """
    records: list[Record] = []
    deleted: list[str] = []
    for row in rows:
        if type(row) is not dict:
            raise ValueError(f"a row is a JSON {type(row).__name__}, not an object")
        if track_changes and _is_tombstone(row):
            deleted_id = row.get("id")
            if deleted_id is None:
                raise ValueError("a $deletedEntity row has no id")
            deleted.append(str(deleted_id))
        else:
            records.append(_adopt(row, primary_key))
    return records, deleted
