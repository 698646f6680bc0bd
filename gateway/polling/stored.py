"""How checkpoints are stored in the compacted checkpoints topic, in records of bounded size.

A bulk import gives tens of thousands of rows one `modifiedon` second, and the seen-set of the overlap
window holds every one of them: 100,000 Dataverse ids are 3.9 MB of JSON, over Kafka's 1 MB limit
(issue 14). So a checkpoint is written as its own record, key `<key>`, holding the first part of the
seen-set, and as many more records as the rest takes, key `<key>#seen/<i>`, each under `PART_BYTES`:

    {"v": 2, "started_ms": ..., "url": ..., "watermark_ms": ..., "cursor": ..., "parts": n,
     "seen": [[updated_ms, [id, ...]], ...]}
    {"v": 2, "part": i, "of": n, "watermark_ms": ..., "seen": [[updated_ms, [id, ...]], ...]}

Pairs are grouped by updated date, which a bulk change shares: 39 bytes a pair instead of 55. All the
records of a checkpoint are written in the transaction of its poll and read read_committed, so the
parts a reader finds are those of the checkpoint record it finds; each part repeats the count and the
watermark, so that a mismatch is an error, never a silently wrong seen-set. A checkpoint written with
fewer parts than the one before it tombstones the rest, so that compaction removes them; a reader
ignores parts beyond the count. Version 1 (one record, `"seen": [[id, updated_ms], ...]`) is read too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from gateway.polling.checkpoint import Checkpoint, CheckpointError, SeenPair

PART_BYTES = 256 * 1024  # two parts fit the producer's 512 KiB batch, far under the broker's 1 MiB
# What no checkpoint record may exceed: under the broker's default max.message.bytes (1,048,588), which
# the checkpoints topic has, as the gateway creates it. Only a huge id, URL or cursor gets there.
MAX_RECORD_BYTES = 1_000_000
_PART_SEPARATOR = "#seen/"
_GROUP_BYTES = 24  # `[<13-digit ms>,[` and `]],`
_PART_HEADER_BYTES = 128  # `{"v":2,"part":<i>,"of":<n>,"watermark_ms":<ms>,"seen":` and `}`, or `"parts":<n>`
_PART_BYTES_FREE = PART_BYTES - _PART_HEADER_BYTES  # for the seen-set
StoredRecord = tuple[str, bytes | None]  # key, value (None: a tombstone)


def part_key(key: str, index: int) -> str:
    return f"{key}{_PART_SEPARATOR}{index}"


def checkpoint_records(key: str, checkpoint: Checkpoint, *, replaces: int = 1) -> list[StoredRecord]:
    """The records that store `checkpoint` under `key`, tombstones included for the parts beyond its own
    of the checkpoint it replaces, which had `replaces` records."""
    header: dict[str, Any] = {
        "v": 2,
        "started_ms": checkpoint.started_ms,
        "url": checkpoint.url,
        "watermark_ms": checkpoint.watermark_ms,
        "cursor": checkpoint.cursor,
    }
    parts = list(_split(checkpoint.seen, first_budget=_PART_BYTES_FREE - len(orjson.dumps(header))))
    records: list[StoredRecord] = [(key, orjson.dumps({**header, "parts": len(parts), "seen": parts[0]}))]
    for index, seen in enumerate(parts[1:], start=1):
        part = {
            "v": 2,
            "part": index,
            "of": len(parts),
            "watermark_ms": checkpoint.watermark_ms,
            "seen": seen,
        }
        records.append((part_key(key, index), orjson.dumps(part)))
    records.extend((part_key(key, index), None) for index in range(len(parts), replaces))
    return records


def stored_parts(records: Iterable[StoredRecord]) -> int:
    """How many records hold the checkpoint that `records` store, tombstones left out."""
    return sum(1 for _key, value in records if value is not None)


def _split(seen: frozenset[SeenPair], *, first_budget: int) -> Iterator[list[list[Any]]]:
    """The seen-set in parts of about `PART_BYTES` of JSON, oldest first; at least one, maybe empty."""
    part: list[list[Any]] = []
    budget = first_budget
    by_date: dict[int, list[str]] = {}
    for object_id, updated_ms in seen:
        by_date.setdefault(updated_ms, []).append(object_id)
    for updated_ms in sorted(by_date):
        ids: list[str] = []
        budget -= _GROUP_BYTES
        for object_id in sorted(by_date[updated_ms]):
            cost = _json_bytes(object_id) + 1
            if budget < cost and (ids or part):
                if ids:
                    part.append([updated_ms, ids])
                yield part
                part, ids, budget = [], [], _PART_BYTES_FREE - _GROUP_BYTES
            ids.append(object_id)
            budget -= cost
        part.append([updated_ms, ids])
    yield part


def _json_bytes(text: str) -> int:
    """The length of `text` as a JSON string; without a dumps for the usual id, which needs no escape."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(orjson.dumps(text))


def load_checkpoints(table: Mapping[str, bytes]) -> dict[str, Checkpoint]:
    """The checkpoints stored in `table`, the latest value of each key of a checkpoints partition."""
    checkpoints: dict[str, Checkpoint] = {}
    for key, value in table.items():
        doc = _document(key, value)
        if "part" not in doc:
            checkpoints[key] = _checkpoint(key, doc, table)
    return checkpoints


def _document(key: str, value: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"unreadable checkpoint {key!r}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") not in (1, 2):
        raise CheckpointError(f"unreadable checkpoint {key!r}: not a version 1 or 2 checkpoint")
    return doc


def _checkpoint(key: str, doc: dict[str, Any], table: Mapping[str, bytes]) -> Checkpoint:
    try:
        watermark = doc["watermark_ms"]
        if doc["v"] == 1:
            seen = frozenset((str(i), int(t)) for i, t in doc["seen"])
        else:
            groups = list(doc["seen"])
            for index in range(1, int(doc["parts"])):
                groups.extend(_part(key, index, doc, table))
            seen = frozenset((str(i), int(t)) for t, ids in groups for i in ids)
        return Checkpoint(
            started_ms=int(doc["started_ms"]),
            url=str(doc["url"]),
            watermark_ms=None if watermark is None else int(watermark),
            cursor=doc["cursor"],
            seen=seen,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"unreadable checkpoint {key!r}: {exc!r}") from exc


def _part(key: str, index: int, head: dict[str, Any], table: Mapping[str, bytes]) -> list[Any]:
    name = part_key(key, index)
    value = table.get(name)
    if value is None:
        raise CheckpointError(f"checkpoint {key!r} has {head['parts']} parts, and {name!r} is missing")
    doc = _document(name, value)
    if (doc.get("part"), doc.get("of"), doc.get("watermark_ms")) != (
        index,
        head["parts"],
        head["watermark_ms"],
    ):
        raise CheckpointError(f"checkpoint part {name!r} belongs to another checkpoint than {key!r}")
    return list(doc["seen"])
