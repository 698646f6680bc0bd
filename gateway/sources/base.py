"""What a source adapter (a connector, in Kafka Connect's terms) gives the polling task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.instances.model import ResourceConfig

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One poll of one resource.

    `url` is the hub URL with the watermark already rendered into it. `cursor` is what the
    previous poll's last page returned (a change-tracking delta link), or None for a first poll.
    """

    resource: ResourceConfig
    url: str
    cursor: str | None


@dataclass(frozen=True, slots=True)
class SourcePage:
    """One page of changes, with records already normalised to `{"id": ..., "attributes": {...}}`.

    `cursor` is set on the last page of a change-tracking poll: the cursor the next poll starts from.
    `baseline` marks the pages of a first change-tracking call, which hold existing rows rather than changes.
    """

    records: list[Record]
    deleted_ids: list[str] = field(default_factory=list)
    cursor: str | None = None
    baseline: bool = False


class Source(Protocol):
    def pages(self, request: FetchRequest) -> AsyncIterator[SourcePage]:
        """Yield every page of one poll, in order. Raises a SourceError when the poll cannot complete."""
        ...

    def row_ids(self, resource: ResourceConfig) -> AsyncIterator[list[str]]:
        """Yield the ids of every row the resource's table holds now, a page at a time: how a filter
        poll, which cannot see deletes, finds the rows that are gone. Raises a SourceError as `pages`."""
        ...
