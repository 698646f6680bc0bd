"""The last published state of each row: what tells a real change from a repeat, which columns an update
changed, and what a resynchronisation must publish.

It lives in the compacted topic `<state_prefix>.row-state`, co-partitioned with the checkpoints: a
poller writes its rows' states to its state partition, in the transaction of the events they describe,
so that the state read back (read_committed) is exactly what was published. One record per row:

    key   ["<instance id>", "<resource>", "<row id>"]            (JSON, unambiguous whatever the names)
    value {"v": 1, "h": {"<column>": <crc32 of its JSON>, ...}, "p": {"<column>": <value>, ...}}

`p`, the previous values, is kept only for resources that ask for them (`previousValues`); a deleted
row is a tombstone. A digest is 4 bytes of CRC-32: a changed column goes unseen with a chance of 2**-32,
and a whole update only if every changed column collides. The bookkeeping columns that every write
changes (the updated date, `versionnumber`, who modified it) are left out, so that an update which
changed nothing else, as Dataverse reports for a save without changes, is seen as the no-op it is.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from gateway.errors import ConfigError

# Dataverse columns that every write sets anew: they tell nothing of what changed.
_BOOKKEEPING = frozenset({"versionnumber", "_modifiedby_value", "_modifiedonbehalfby_value"})
_dumps = orjson.dumps
_crc32 = zlib.crc32


class RowStateError(ConfigError):
    """A row-state record that cannot be read: a bug or a foreign writer, never silently ignored."""


def row_key(instance_id: str, resource: str, row_id: str) -> bytes:
    return _dumps([instance_id, resource, row_id])


def parse_row_key(key: str) -> tuple[str, str, str]:
    try:
        parts = orjson.loads(key)
    except orjson.JSONDecodeError as exc:
        raise RowStateError(f"unreadable row-state key {key!r}: {exc}") from exc
    if type(parts) is not list or len(parts) != 3 or not all(type(part) is str for part in parts):
        raise RowStateError(f"unreadable row-state key {key!r}: not [instance id, resource, row id]")
    return parts[0], parts[1], parts[2]


def ignored_columns(updated_field: str) -> frozenset[str]:
    """The columns left out of the digests: the bookkeeping ones and the resource's updated date."""
    return _BOOKKEEPING | {updated_field.rpartition(".")[2]}


def columns_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's columns: its `attributes` when it has them (every Dynamics record does), else itself."""
    attributes = record.get("attributes")
    return attributes if type(attributes) is dict else record


def digests(columns: Mapping[str, Any], ignored: frozenset[str]) -> dict[str, int]:
    return {name: _crc32(_dumps(value)) for name, value in columns.items() if name not in ignored}


def encode_state(column_digests: Mapping[str, int], previous: Mapping[str, Any] | None) -> bytes:
    if previous is None:
        return _dumps({"v": 1, "h": column_digests})
    return _dumps({"v": 1, "h": column_digests, "p": previous})


def decode_state(value: bytes, *, row_id: str) -> tuple[dict[str, int], dict[str, Any] | None]:
    """The digests and, when kept, the values of the stored state of row `row_id`."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RowStateError(f"unreadable state of row {row_id!r}: {exc}") from exc
    if type(doc) is not dict or doc.get("v") != 1 or type(doc.get("h")) is not dict:
        raise RowStateError(f"unreadable state of row {row_id!r}: not a version 1 row state")
    previous = doc.get("p")
    return doc["h"], previous if type(previous) is dict else None


def changed_columns(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """The columns whose digests differ, added and removed ones included, sorted."""
    changed = [name for name, digest in after.items() if before.get(name) != digest]
    changed.extend(name for name in before if name not in after)
    return sorted(changed)


class RowStates:
    """The committed states of one resource's rows (row id -> stored value), and what a poll stages.

    A poll stages what it writes; only once its transaction has committed are the staged states made
    the committed ones, so that a failed poll leaves the states as Kafka has them.
    """

    __slots__ = ("_committed", "_staged")

    def __init__(self, committed: dict[str, bytes] | None = None) -> None:
        self._committed: dict[str, bytes] = {} if committed is None else committed
        self._staged: dict[str, bytes | None] = {}

    def __len__(self) -> int:
        return len(self._committed)

    def get(self, row_id: str) -> bytes | None:
        staged = self._staged
        if staged and row_id in staged:
            return staged[row_id]
        return self._committed.get(row_id)

    def ids(self) -> Iterable[str]:
        """The rows with a committed state (deleted ones are gone)."""
        return self._committed.keys()

    def stage(self, row_id: str, value: bytes | None) -> None:
        self._staged[row_id] = value

    def staged(self) -> dict[str, bytes | None]:
        """What the poll staged, row id -> value (None: deleted)."""
        return self._staged

    def commit(self) -> None:
        committed = self._committed
        for row_id, value in self._staged.items():
            if value is None:
                committed.pop(row_id, None)
            else:
                committed[row_id] = value
        self._staged = {}

    def discard(self) -> None:
        self._staged = {}


def group_row_states(table: Mapping[str, bytes]) -> dict[tuple[str, str], dict[str, bytes]]:
    """The stored states of one state partition, by (instance id, resource)."""
    grouped: dict[tuple[str, str], dict[str, bytes]] = {}
    for key, value in table.items():
        instance_id, resource, row_id = parse_row_key(key)
        grouped.setdefault((instance_id, resource), {})[row_id] = value
    return grouped
