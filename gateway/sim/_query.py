"""OData query options and preferences, run against a table one page at a time.

Plain queries return rows ordered by `(modifiedon, primary key)`, or by one `$orderby` column
with the key breaking ties; the `$skiptoken` holds the last key returned, so a row changed while
a client pages moves instead of shifting the others. With `Prefer: odata.maxpagesize`, `$top` is
ignored, as Dataverse documents; without it `$top` caps a single page.

Change tracking reads rows whose version lies in `(since, end]` in version order, then the
tombstones in the same range; `end` is the table's version when the first page was asked for,
and it becomes the next delta token. Delta tokens look like Dataverse's,
`<version>!<MM/dd/yyyy HH:mm:ss>` with the UTC time they were issued.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import orjson

from gateway.sim._errors import EXPIRED_VERSION_STAMP, QUERY_ERROR, ServiceError
from gateway.sim._odata_filter import Predicate, parse_filter
from gateway.sim._records import Row, TableSpec
from gateway.sim._store import Table

MAX_PAGE_SIZE = 5000
_DELTA_TIME_FORMAT = "%m/%d/%Y %H:%M:%S"
_OPTIONS = frozenset({"$select", "$filter", "$orderby", "$top", "$expand", "$skiptoken", "$deltatoken"})
_NOT_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top")
_first = itemgetter(0)
_PREFERENCE = re.compile(r'(?:[^,"]|"[^"]*")+')  # one preference: commas inside quotes do not split


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a request's `Prefer` headers ask for that the service honours."""

    max_page_size: int | None = None
    track_changes: bool = False
    annotations: tuple[str, ...] = ()  # odata.include-annotations: terms such as "*" or a FormattedValue

    @classmethod
    def parse(cls, headers: Iterable[str]) -> Preferences:
        size: int | None = None
        track = False
        annotations: tuple[str, ...] = ()
        for header in headers:
            for item in _PREFERENCE.findall(header):
                name, _, value = item.strip().partition("=")
                name, value = name.strip().lower(), value.strip().strip('"')
                if name == "odata.track-changes":
                    track = True
                elif name == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
                    size = min(int(value), MAX_PAGE_SIZE)
                elif name == "odata.include-annotations" and value:
                    annotations = tuple(term.strip() for term in value.split(","))
        return cls(size, track, annotations)

    def applied(self) -> str | None:
        """The `Preference-Applied` header value, or None when nothing was asked for."""
        parts = ["odata.track-changes"] if self.track_changes else []
        if self.max_page_size is not None:
            parts.append(f"odata.maxpagesize={self.max_page_size}")
        if self.annotations:
            parts.append(f'odata.include-annotations="{",".join(self.annotations)}"')
        return ", ".join(parts) or None


@dataclass(frozen=True, slots=True)
class Query:
    select: tuple[str, ...] | None
    predicate: Predicate | None
    order_column: str | None
    descending: bool
    page_size: int
    paged: bool  # False when $top alone limits the answer to one page
    tracking: bool
    since: int | None  # the delta token's version; None on the first change tracking call
    skiptoken: str | None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]  # already projected on $select
    deleted_ids: list[str]
    skiptoken: str | None  # of the next page, if there is one
    delta_version: int | None  # on the last page of a change tracking answer


def parse_query(
    table: Table, params: Mapping[str, str], prefs: Preferences, *, now: datetime, token_expiry: timedelta
) -> Query:
    """Check the query options of a GET on `table`; raise ServiceError as Dataverse would."""
    spec = table.spec
    for name in params:
        if name.startswith("$") and name not in _OPTIONS:
            raise ServiceError(400, QUERY_ERROR, f"The query parameter {name} is not supported.")
    deltatoken = params.get("$deltatoken")
    tracking = prefs.track_changes or deltatoken is not None
    if tracking:
        for name in _NOT_WITH_TRACKING:
            if name in params:
                raise ServiceError(
                    400,
                    QUERY_ERROR,
                    f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.',
                )
    if "$expand" in params:
        raise ServiceError(400, QUERY_ERROR, "The simulator does not support $expand.")
    order_column, descending = _parse_orderby(spec, params.get("$orderby"))
    top = _parse_top(params.get("$top"))
    paged = top is None or prefs.max_page_size is not None
    return Query(
        select=_parse_select(spec, params.get("$select")),
        predicate=None if (text := params.get("$filter")) is None else parse_filter(text, spec),
        order_column=order_column,
        descending=descending,
        page_size=(prefs.max_page_size or MAX_PAGE_SIZE) if paged else min(top or 0, MAX_PAGE_SIZE),
        paged=paged,
        tracking=tracking,
        since=None if deltatoken is None else _parse_deltatoken(table, deltatoken, now, token_expiry),
        skiptoken=params.get("$skiptoken"),
    )


def run_query(table: Table, query: Query) -> Page:
    if query.tracking:
        return _tracking_page(table, query)
    if query.order_column is None or query.order_column == "modifiedon":
        keys: Sequence[tuple[Any, ...]] = table.order
    else:
        keys = sorted(_sort_key(row.get(query.order_column), key) for key, row in table.rows.items())
    last = None if query.skiptoken is None else tuple(_field(_decode_skiptoken(query.skiptoken), "k", list))
    try:
        if query.descending:
            indices = range((len(keys) if last is None else bisect.bisect_left(keys, last)) - 1, -1, -1)
        else:
            indices = range(0 if last is None else bisect.bisect_right(keys, last), len(keys))
    except TypeError:  # a key from a token that does not compare with this ordering's keys
        raise _bad_skiptoken() from None
    found: list[Row] = []
    for index in indices:
        key = keys[index]
        row = table.rows[key[-1]]
        if query.predicate is None or query.predicate(row):
            if len(found) == query.page_size:
                return Page(
                    found, [], _encode_skiptoken({"k": list(last or ())}) if query.paged else None, None
                )
            found.append(_project(row, query.select, table.spec))
            last = key
    return Page(found, [], None, None)


def deltatoken(version: int, issued: datetime) -> str:
    return f"{version}!{issued.astimezone(UTC).strftime(_DELTA_TIME_FORMAT)}"


def _tracking_page(table: Table, query: Query) -> Page:
    if query.skiptoken is None:
        end, phase, after = table.version, 0, query.since or 0
    else:
        state = _decode_skiptoken(query.skiptoken)
        end, phase, after = _field(state, "e", int), _field(state, "p", int), _field(state, "a", int)
    rows: list[Row] = []
    deleted: list[str] = []

    def next_page(phase: int, after: int) -> Page:
        return Page(rows, deleted, _encode_skiptoken({"e": end, "p": phase, "a": after}), None)

    if phase == 0:
        for version, key in table.log[bisect.bisect_right(table.log, after, key=_first) :]:
            if version > end:
                break
            row = table.rows.get(key)
            if row is None or row["versionnumber"] != version:
                continue  # stale: the row changed again or was deleted since
            if len(rows) == query.page_size:
                return next_page(0, after)
            rows.append(_project(row, query.select, table.spec))
            after = version
        after = query.since or 0
    if query.since is not None:  # the first call returns rows only, never deletes
        for version, key in table.tombstones[bisect.bisect_right(table.tombstones, after, key=_first) :]:
            if version > end:
                break
            if len(rows) + len(deleted) == query.page_size:
                return next_page(1, after)
            deleted.append(key)
            after = version
    return Page(rows, deleted, None, end)


def _project(row: Row, select: tuple[str, ...] | None, spec: TableSpec) -> Row:
    """The row as the client sees it: `$select`ed columns, always with the etag and primary key."""
    if select is None:
        return row
    projected = {"@odata.etag": row["@odata.etag"]}
    for column in select:
        projected[column] = row.get(column)
    projected[spec.primary_key] = row[spec.primary_key]
    return projected


def _sort_key(value: Any, key: str) -> tuple[Any, ...]:
    """Nulls first, as SQL Server sorts them ascending; strings case-insensitively."""
    if value is None:
        return (0, 0, key)
    return (1, value.casefold() if isinstance(value, str) else value, key)


def _parse_select(spec: TableSpec, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    columns = tuple(column.strip() for column in text.split(","))
    for column in columns:
        if column not in spec.columns:
            raise ServiceError(
                400, QUERY_ERROR, f"Could not find a property named '{column}' on type '{spec.type_name()}'."
            )
    return columns


def _parse_orderby(spec: TableSpec, text: str | None) -> tuple[str | None, bool]:
    if text is None:
        return None, False
    if "," in text:
        raise ServiceError(400, QUERY_ERROR, "The simulator supports $orderby on one column only.")
    column, _, direction = text.strip().partition(" ")
    direction = direction.strip().lower() or "asc"
    if direction not in ("asc", "desc"):
        raise ServiceError(400, QUERY_ERROR, f"Syntax error at position {len(column) + 1} in '{text}'.")
    if column not in spec.columns:
        raise ServiceError(
            400, QUERY_ERROR, f"Could not find a property named '{column}' on type '{spec.type_name()}'."
        )
    return column, direction == "desc"


def _parse_top(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise ServiceError(
            400,
            QUERY_ERROR,
            f"Invalid value '{text}' for $top query option found. "
            "The $top query option requires a non-negative integer value.",
        )
    return int(text)


def _parse_deltatoken(table: Table, token: str, now: datetime, expiry: timedelta) -> int:
    version_text, _, issued_text = token.partition("!")
    try:
        version = int(version_text)
        issued = datetime.strptime(issued_text, _DELTA_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ServiceError(400, QUERY_ERROR, "The $deltatoken is not valid.") from None
    if not 0 <= version <= table.version:
        raise ServiceError(400, QUERY_ERROR, "The $deltatoken is not valid.")
    if now - issued > expiry:
        raise ServiceError(
            400,
            EXPIRED_VERSION_STAMP,
            "Version stamp associated with the client has expired. Please perform a full sync.",
        )
    return version


def _encode_skiptoken(state: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def _decode_skiptoken(token: str) -> dict[str, Any]:
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise _bad_skiptoken() from None
    if not isinstance(state, dict):
        raise _bad_skiptoken()
    return state


def _field(state: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    value = state.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _bad_skiptoken()
    return value


def _bad_skiptoken() -> ServiceError:
    return ServiceError(400, QUERY_ERROR, "The $skiptoken is not valid.")
