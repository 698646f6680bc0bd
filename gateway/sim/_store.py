"""The simulated tables: rows, a per-table change version, and tombstones of deleted rows.

Every create, update and delete stamps the table's next version. A row's `versionnumber` is the
version of its last change, and its `@odata.etag` is `W/"<versionnumber>"`, as in Dataverse.
Three indexes serve the queries:

- `order`, the keys `(modifiedon, primary key)` sorted, which plain queries page through;
- `log`, `(version, primary key)` in version order, which change tracking reads; an entry whose
  version is no longer the row's is stale and skipped, and stale entries are compacted away;
- `tombstones`, `(version, primary key)` of deleted rows, in version order.
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.sim._clock import TIMESTAMP_FORMAT, Clock, format_timestamp
from gateway.sim._errors import INVALID_ARGUMENT, OBJECT_DOES_NOT_EXIST, QUERY_ERROR, ServiceError
from gateway.sim._records import ENTITY_SETS, TABLES, Kind, Row, TableSpec, new_guid

_READ_ONLY = frozenset({"versionnumber", "@odata.etag"})
_TEMPLATES = 256  # pre-generated rows per table that bulk loads copy
_BULK_SPAN_SECONDS = 90 * 86_400  # bulk-loaded rows were created and modified within the last 90 days
_PYTHON_TYPES: Mapping[Kind, tuple[type, ...]] = {
    Kind.STRING: (str,),
    Kind.INT: (int,),
    Kind.DECIMAL: (int, float),
    Kind.BOOL: (bool,),
}


class Table:
    """One entity set. Mutate it through DataverseState, which keeps the indexes right."""

    __slots__ = ("log", "order", "rows", "spec", "tombstones", "version")

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.rows: dict[str, Row] = {}
        self.order: list[tuple[str, str]] = []
        self.log: list[tuple[int, str]] = []
        self.tombstones: list[tuple[int, str]] = []
        self.version = 0


class DataverseState:
    """The tables of one simulated organization, for tests to read and change in-process.

    `stamp_clock` gives the time written into `createdon` and `modifiedon` (the simulator adds
    its clock skew fault there). Methods take the entity set name, e.g. `accounts`.
    """

    def __init__(
        self, *, stamp_clock: Clock, rng: random.Random, entity_sets: Iterable[str] = ENTITY_SETS
    ) -> None:
        self._stamp_clock = stamp_clock
        self._rng = rng
        self._tables = {name: Table(TABLES[name]) for name in entity_sets}
        self._templates: dict[str, list[Row]] = {}

    @property
    def tables(self) -> Mapping[str, Table]:
        return self._tables

    def table(self, entity_set: str) -> Table:
        table = self._tables.get(entity_set)
        if table is None:
            raise ServiceError(404, QUERY_ERROR, f"Resource not found for the segment '{entity_set}'.")
        return table

    def get(self, entity_set: str, record_id: str) -> Row | None:
        record = self.table(entity_set).rows.get(record_id.lower())
        return None if record is None else dict(record)

    def upsert(self, entity_set: str, fields: Mapping[str, Any] | None = None) -> Row:
        """Create a row, or update it when `fields` names an existing primary key.

        Missing columns of a new row get realistic values. `createdon` and `modifiedon` may be
        given (ISO 8601 text or aware datetimes) to simulate a late commit: a row stamped in the
        past that becomes visible only now. Otherwise the server stamps the current time.
        """
        table = self.table(entity_set)
        spec = table.spec
        changes = _validate(spec, fields or {})
        record_id = changes.get(spec.primary_key)
        if record_id is not None and record_id in table.rows:
            return self.update(entity_set, record_id, changes)
        now = format_timestamp(self._stamp_clock())
        record: Row = {"@odata.etag": "", spec.primary_key: new_guid(self._rng), **spec.make(self._rng)}
        record.update(createdon=now, modifiedon=now, versionnumber=0)
        record.update(changes)
        return dict(self._write(table, record, None))

    def update(self, entity_set: str, record_id: str, fields: Mapping[str, Any]) -> Row:
        """Change columns of an existing row; `modifiedon` is stamped now unless given."""
        table = self.table(entity_set)
        spec = table.spec
        old = self._existing(table, record_id)
        changes = _validate(spec, fields)
        if changes.get(spec.primary_key, old[spec.primary_key]) != old[spec.primary_key]:
            raise ServiceError(400, INVALID_ARGUMENT, f"The primary key {spec.primary_key} cannot change.")
        record = {**old, "modifiedon": format_timestamp(self._stamp_clock()), **changes}
        return dict(self._write(table, record, old))

    def delete(self, entity_set: str, record_id: str) -> None:
        table = self.table(entity_set)
        old = self._existing(table, record_id)
        key = old[table.spec.primary_key]
        self._unindex(table, old)
        del table.rows[key]
        table.version += 1
        table.tombstones.append((table.version, key))

    def bulk_load(self, entity_set: str, count: int, *, within_seconds: int | None = None) -> None:
        """Add `count` rows quickly, created and modified at times spread over the last 90 days, or
        created and modified at once within the last `within_seconds` (0: all in the current second),
        as a bulk import does.

        The rows copy a few hundred pre-generated ones and differ in key and timestamps, which
        keeps 200,000 rows of about 1 KB within a few seconds.
        """
        if count < 0:
            raise ValueError(f"cannot load {count} rows")
        if within_seconds is not None and within_seconds < 0:
            raise ValueError(f"cannot load rows within {within_seconds} seconds")
        table = self.table(entity_set)
        spec = table.spec
        templates = self._templates.get(entity_set)
        if templates is None:
            templates = self._templates[entity_set] = [spec.make(self._rng) for _ in range(_TEMPLATES)]
        rng, key_name, rows = self._rng, spec.primary_key, table.rows
        now = int(self._stamp_clock().timestamp())
        new_keys: list[tuple[str, str]] = []
        for index in range(count):
            if within_seconds is None:
                created = now - rng.randrange(_BULK_SPAN_SECONDS)
                modified = created + rng.randrange(now - created + 1)
            else:
                created = modified = now - rng.randrange(within_seconds + 1)
            key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            modifiedon = time.strftime(TIMESTAMP_FORMAT, time.gmtime(modified))
            version = table.version + index + 1
            rows[key] = {
                "@odata.etag": f'W/"{version}"',
                key_name: key,
                **templates[index % _TEMPLATES],
                "createdon": time.strftime(TIMESTAMP_FORMAT, time.gmtime(created)),
                "modifiedon": modifiedon,
                "versionnumber": version,
            }
            new_keys.append((modifiedon, key))
            table.log.append((version, key))
        table.version += count
        table.order.extend(new_keys)
        table.order.sort()

    def random_id(self, entity_set: str) -> str | None:
        """The key of a row picked at random, or None when the table is empty."""
        order = self.table(entity_set).order
        return order[self._rng.randrange(len(order))][1] if order else None

    def _existing(self, table: Table, record_id: str) -> Row:
        record = table.rows.get(record_id.lower())
        if record is None:
            raise ServiceError(
                404, OBJECT_DOES_NOT_EXIST, f"{table.spec.entity_type} With Id = {record_id} Does Not Exist"
            )
        return record

    def _write(self, table: Table, record: Row, old: Row | None) -> Row:
        key = record[table.spec.primary_key]
        if old is not None:
            self._unindex(table, old)
        table.version += 1
        record["versionnumber"] = table.version
        record["@odata.etag"] = f'W/"{table.version}"'
        table.rows[key] = record
        bisect.insort(table.order, (record["modifiedon"], key))
        table.log.append((table.version, key))
        if len(table.log) > 2 * len(table.rows) + 1024:
            table.log = sorted((row["versionnumber"], row_key) for row_key, row in table.rows.items())
        return record

    @staticmethod
    def _unindex(table: Table, record: Row) -> None:
        entry = (record["modifiedon"], record[table.spec.primary_key])
        del table.order[bisect.bisect_left(table.order, entry)]


def _validate(spec: TableSpec, fields: Mapping[str, Any]) -> Row:
    """`fields` checked against the table's columns, with timestamps and keys in canonical form."""
    clean: Row = {}
    for column, value in fields.items():
        kind = spec.columns.get(column)
        if kind is None:
            raise ServiceError(
                400, QUERY_ERROR, f"Could not find a property named '{column}' on type '{spec.type_name()}'."
            )
        if column in _READ_ONLY:
            raise ServiceError(400, INVALID_ARGUMENT, f"The column '{column}' is set by the server.")
        clean[column] = None if value is None else _coerce(column, kind, value)
    return clean


def _coerce(column: str, kind: Kind, value: Any) -> Any:
    try:
        if kind is Kind.DATETIME:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            return format_timestamp(moment.replace(tzinfo=moment.tzinfo or UTC))
        if kind is Kind.GUID:
            return str(uuid.UUID(value))
    except (TypeError, ValueError, AttributeError) as error:
        raise ServiceError(
            400, INVALID_ARGUMENT, f"The value of '{column}' is not a valid {kind.value}."
        ) from error
    allowed = _PYTHON_TYPES[kind]
    if not isinstance(value, allowed) or (kind is not Kind.BOOL and isinstance(value, bool)):
        raise ServiceError(400, INVALID_ARGUMENT, f"The value of '{column}' is not a valid {kind.value}.")
    return value
