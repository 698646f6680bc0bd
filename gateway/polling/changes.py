"""From a normalised source record to a classified change: the per-record hot path of polling."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.instances.model import DatesConfiguration, ResourceConfig


class EventType(enum.StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


class SkipReason(enum.StrEnum):
    ID = "missing_id"
    UPDATED_DATE = "bad_updated_date"


@dataclass(frozen=True, slots=True)
class Change:
    object_id: str
    event_type: EventType
    updated_ms: int | None
    record: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: SkipReason
    detail: str


def classify(created_ms: int | None, updated_ms: int, tolerance_ms: int) -> EventType:
    """CREATED when the record was not touched after its creation (within the tolerance)."""
    if created_ms is not None and abs(updated_ms - created_ms) <= tolerance_ms:
        return EventType.CREATED
    return EventType.UPDATED


def _getter(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _lookup(record: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = record
    for key in keys:
        # Records are dicts; the exact type test spares the slower ABC check on the hot path.
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


class ChangeReader:
    """Reads id and dates from records of one resource; paths are split once, not per record."""

    def __init__(self, resource: ResourceConfig) -> None:
        dates: DatesConfiguration = resource.dates
        self._dates = dates
        self._id = _getter(resource.id_field)
        self._updated = _getter(dates.updated_field)
        self._created = _getter(dates.created_field) if dates.created_field else None
        self._tolerance_ms = int(resource.created_check_tolerance * 1000)

    def read(self, record: Mapping[str, Any]) -> Change | Skipped:
        raw_id = _lookup(record, self._id)
        if raw_id is None or raw_id == "":
            return Skipped(SkipReason.ID, f"no value at {'.'.join(self._id)}")
        updated_ms = self._parse_ms(_lookup(record, self._updated), updated=True)
        if updated_ms is None:
            return Skipped(SkipReason.UPDATED_DATE, f"no parsable date at {'.'.join(self._updated)}")
        created_ms = None
        if self._created is not None:
            created_ms = self._parse_ms(_lookup(record, self._created), updated=False)
        event_type = classify(created_ms, updated_ms, self._tolerance_ms)
        return Change(str(raw_id), event_type, updated_ms, record)

    def _parse_ms(self, value: Any, *, updated: bool) -> int | None:
        if value is None:
            return None
        dates = self._dates
        fmt = dates.updated_format if updated else dates.created_format
        tz = dates.updated_timezone if updated else dates.created_timezone
        if fmt is None:
            return None
        try:
            # Integer arithmetic: float timestamps round 1700000000123 ms down to ...122.
            return fmt.parse_ms(value, tz)
        except ValueError:
            return None


def deleted(object_id: str) -> Change:
    return Change(object_id, EventType.DELETED, None, {"id": object_id})
