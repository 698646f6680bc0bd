"""Checkpoints in the compacted topic: records of bounded size whatever the seen-set, read back whole."""

from __future__ import annotations

import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.polling.checkpoint import Checkpoint, CheckpointError
from gateway.polling.stored import (
    PART_BYTES,
    StoredRecord,
    checkpoint_records,
    load_checkpoints,
    part_key,
    stored_parts,
)

KEY = "instance-1:accounts"
SECOND = 1_764_000_000_000


def _compacted(*writes: list[StoredRecord]) -> dict[str, bytes]:
    """The latest value per key after `writes`, as a read of the compacted topic finds it."""
    table: dict[str, bytes] = {}
    for records in writes:
        for key, value in records:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    return table


def _guids(count: int, seed: int = 0) -> list[str]:
    return [str(uuid.UUID(int=seed * 1_000_003 + n + 1, version=4)) for n in range(count)]


def test_a_small_checkpoint_is_one_record_and_reads_back_equal() -> None:
    checkpoint = Checkpoint(started_ms=1, url="u", watermark_ms=5, cursor="c", seen=frozenset({("x", 5)}))
    records = checkpoint_records(KEY, checkpoint)
    assert [key for key, _ in records] == [KEY]
    assert load_checkpoints(_compacted(records)) == {KEY: checkpoint}


def test_100000_ids_sharing_one_second_make_records_of_bounded_size_that_read_back_whole() -> None:
    """Issue 14: 50,000 such pairs made one 2.75 MB record, which Kafka refuses; now each is a part."""
    seen = frozenset((guid, SECOND) for guid in _guids(100_000))
    checkpoint = Checkpoint(started_ms=1, url="u", watermark_ms=SECOND, seen=seen)
    records = checkpoint_records(KEY, checkpoint)
    sizes = [len(value or b"") for _, value in records]
    assert max(sizes) <= PART_BYTES
    assert len(records) == 15  # about 39 bytes a pair: 3.9 MB in parts of 256 KiB
    assert [key for key, _ in records] == [KEY, *(part_key(KEY, i) for i in range(1, 15))]
    assert load_checkpoints(_compacted(records)) == {KEY: checkpoint}


def test_a_checkpoint_with_fewer_parts_tombstones_the_rest() -> None:
    big = Checkpoint(
        started_ms=1, url="u", watermark_ms=SECOND, seen=frozenset((g, SECOND) for g in _guids(30_000))
    )
    small = Checkpoint(
        started_ms=1, url="u", watermark_ms=SECOND + 9000, seen=frozenset({("a", SECOND + 9000)})
    )
    first = checkpoint_records(KEY, big)
    second = checkpoint_records(KEY, small, replaces=stored_parts(first))
    assert stored_parts(first) == 5
    assert [(key, value) for key, value in second if value is None] == [
        (part_key(KEY, i), None) for i in range(1, 5)
    ]
    table = _compacted(first, second)
    assert list(table) == [KEY]
    assert load_checkpoints(table) == {KEY: small}


def test_a_version_1_checkpoint_is_read() -> None:
    written_by_v1 = orjson.dumps(
        {"v": 1, "started_ms": 1, "url": "u", "watermark_ms": 5, "cursor": None, "seen": [["x", 5], ["y", 4]]}
    )
    assert load_checkpoints({KEY: written_by_v1}) == {
        KEY: Checkpoint(started_ms=1, url="u", watermark_ms=5, seen=frozenset({("x", 5), ("y", 4)}))
    }


def test_a_missing_or_foreign_part_or_bad_json_is_an_error_naming_the_key() -> None:
    checkpoint = Checkpoint(
        started_ms=1, url="u", watermark_ms=SECOND, seen=frozenset((g, SECOND) for g in _guids(20_000))
    )
    table = _compacted(checkpoint_records(KEY, checkpoint))
    other = Checkpoint(
        started_ms=1,
        url="u",
        watermark_ms=SECOND + 1,
        seen=frozenset((g, SECOND + 1) for g in _guids(20_000)),
    )
    with pytest.raises(CheckpointError, match="#seen/2' is missing"):
        load_checkpoints({k: v for k, v in table.items() if k != part_key(KEY, 2)})
    with pytest.raises(CheckpointError, match="belongs to another checkpoint"):
        load_checkpoints(
            {**table, part_key(KEY, 1): dict(checkpoint_records(KEY, other))[part_key(KEY, 1)] or b""}
        )
    with pytest.raises(CheckpointError, match=f"unreadable checkpoint '{KEY}'"):
        load_checkpoints({KEY: b"{not json"})
    with pytest.raises(CheckpointError, match="not a version 1 or 2"):
        load_checkpoints({KEY: b'{"v": 3}'})
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoints({KEY: b'{"v": 2}'})


_ids = st.builds(lambda n, tag: "x" * n + tag, st.integers(0, 120_000), st.text(max_size=3))
_pairs = st.frozensets(st.tuples(_ids, st.integers(0, 5)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(seen=_pairs, before=_pairs)
def test_any_seen_set_is_stored_in_bounded_records_and_read_back_after_any_predecessor(
    seen: frozenset[tuple[str, int]], before: frozenset[tuple[str, int]]
) -> None:
    """Ids of up to 120 KB, so that a few of them fill parts; ids with quotes or unicode included."""
    previous = checkpoint_records(KEY, Checkpoint(started_ms=0, url="u", watermark_ms=9, seen=before))
    checkpoint = Checkpoint(started_ms=0, url="u", watermark_ms=5, cursor="c", seen=seen)
    records = checkpoint_records(KEY, checkpoint, replaces=stored_parts(previous))
    assert all(len(value) <= PART_BYTES for _, value in records if value is not None)
    assert load_checkpoints(_compacted(previous, records)) == {KEY: checkpoint}
