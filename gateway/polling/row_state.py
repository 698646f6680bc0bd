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

import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

import orjson

from gateway.errors import ConfigError

# Dataverse columns that every write sets anew: they tell nothing of what changed.
_BOOKKEEPING = frozenset({"versionnumber", "_modifiedby_value", "_modifiedonbehalfby_value"})
# Rows of one resource come with their columns in one order (the `$select`'s); a source whose rows vary
# without end must not grow the cache of shapes without end.
_MAX_SHAPES = 256
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


@cache
def _packer(count: int) -> struct.Struct:
    """Packs `count` digests, 4 bytes each."""
    return struct.Struct(f"<{count}I")


@dataclass(slots=True)
class RowState:
    """A row's state as a poller holds it: its compared columns (one tuple, shared by the rows of a
    shape), their digests packed 4 bytes each in that order, and their values when they are kept. Packed,
    an account's state (25 columns) takes about 200 bytes in memory, where its record takes 685."""

    columns: tuple[str, ...]
    digests: bytes
    previous: dict[str, Any] | None = None

    def digest_map(self) -> dict[str, int]:
        return dict(zip(self.columns, _packer(len(self.columns)).unpack(self.digests), strict=True))


_Values = Callable[[Mapping[str, Any]], tuple[Any, ...]]


def _values_getter(names: tuple[str, ...]) -> _Values:
    """The values of `names`, as a tuple whatever their count (itemgetter of one name gives no tuple)."""
    if len(names) == 1:
        (name,) = names
        return lambda columns: (columns[name],)
    if not names:
        return lambda _columns: ()
    getter: _Values = itemgetter(*names)
    return getter


class Shapes:
    """The states of one resource's rows. Rows whose columns come in the same order share a shape:
    the compared columns, a getter of their values and a packer of their digests, made once."""

    __slots__ = ("_by_order", "_ignored")

    def __init__(self, ignored: frozenset[str]) -> None:
        self._ignored = ignored
        self._by_order: dict[tuple[str, ...], tuple[tuple[str, ...], _Values, struct.Struct]] = {}

    def state_of(self, columns: Mapping[str, Any], *, keep_values: bool) -> RowState:
        """A row's state: a digest (CRC-32 of its JSON) per column but the ignored ones, and the
        columns' values when `keep_values`."""
        order = tuple(columns)
        shape = self._by_order.get(order)
        if shape is None:
            shape = self._shape(order)
        names, values_of, packer = shape
        values = values_of(columns)
        digests = packer.pack(*map(_crc32, map(_dumps, values)))
        return RowState(names, digests, dict(zip(names, values, strict=True)) if keep_values else None)

    def _shape(self, order: tuple[str, ...]) -> tuple[tuple[str, ...], _Values, struct.Struct]:
        if len(self._by_order) >= _MAX_SHAPES:
            self._by_order.clear()
        names = tuple(name for name in order if name not in self._ignored)
        shape = self._by_order[order] = (names, _values_getter(names), _packer(len(names)))
        return shape


def encode_state(state: RowState) -> bytes:
    if state.previous is None:
        return _dumps({"v": 1, "h": state.digest_map()})
    return _dumps({"v": 1, "h": state.digest_map(), "p": state.previous})


def decode_state(value: bytes, *, row_id: str) -> RowState:
    """The stored state of row `row_id`, with the values of its columns when they were kept."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RowStateError(f"unreadable state of row {row_id!r}: {exc}") from exc
    if type(doc) is not dict or doc.get("v") != 1 or type(doc.get("h")) is not dict:
        raise RowStateError(f"unreadable state of row {row_id!r}: not a version 1 row state")
    digests: dict[str, Any] = doc["h"]
    try:
        packed = _packer(len(digests)).pack(*digests.values())
    except struct.error as exc:
        raise RowStateError(f"unreadable state of row {row_id!r}: a digest is not a CRC-32: {exc}") from exc
    previous = doc.get("p")
    return RowState(tuple(digests), packed, previous if type(previous) is dict else None)


def changed_columns(before: RowState, after: RowState) -> list[str]:
    """The columns whose digests differ, added and removed ones included, sorted. Rows of one shape
    compare their packed digests, and unpack them only when they differ."""
    if before.columns == after.columns:
        if before.digests == after.digests:
            return []
        unpack = _packer(len(after.columns)).unpack
        pairs = zip(after.columns, unpack(before.digests), unpack(after.digests), strict=True)
        return sorted(name for name, old, new in pairs if old != new)
    old_digests, new_digests = before.digest_map(), after.digest_map()
    changed = [name for name, digest in new_digests.items() if old_digests.get(name) != digest]
    changed.extend(name for name in old_digests if name not in new_digests)
    return sorted(changed)


class RowStates:
    """The committed states of one resource's rows, and what a poll stages.

    A poll stages what it writes; only once its transaction has committed are the staged states made
    the committed ones, so that a failed poll leaves the states as Kafka has them. States read back from
    the topic stay its bytes until a poll asks for them, so that taking over a partition decodes nothing.
    """

    __slots__ = ("_committed", "_staged")

    def __init__(self, stored: Mapping[str, bytes] | None = None) -> None:
        self._committed: dict[str, bytes | RowState] = {} if stored is None else dict(stored)
        self._staged: dict[str, RowState | None] = {}

    def __len__(self) -> int:
        return len(self._committed)

    def get(self, row_id: str) -> RowState | None:
        staged = self._staged
        if staged and row_id in staged:
            return staged[row_id]
        state = self._committed.get(row_id)
        if isinstance(state, bytes):
            return decode_state(state, row_id=row_id)
        return state

    def has(self, row_id: str) -> bool:
        """Whether the row has a state, staged or committed (a row staged as deleted has none)."""
        staged = self._staged
        if staged and row_id in staged:
            return staged[row_id] is not None
        return row_id in self._committed

    def ids(self) -> Iterable[str]:
        """The rows with a committed state (deleted ones are gone)."""
        return self._committed.keys()

    def stage(self, row_id: str, state: RowState | None) -> None:
        self._staged[row_id] = state

    def staged(self) -> dict[str, RowState | None]:
        """What the poll staged, row id -> state (None: deleted)."""
        return self._staged

    def commit(self) -> None:
        committed = self._committed
        for row_id, state in self._staged.items():
            if state is None:
                committed.pop(row_id, None)
            else:
                committed[row_id] = state
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
