"""A resource's position in its source, and the overlap window that keeps the watermark boundary exact.

Filter-mode polls ask for records updated after `watermark - overlap`. Records inside that window
may come back on the next poll, so the (id, updated) pairs already published there are kept in the
checkpoint and skipped (`polling/stored.py` keeps any number of them in records of bounded size).
That covers records sharing the boundary timestamp, records committed late
(up to `overlap` behind the newest one seen) and a source clock that drifts by up to `overlap`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.errors import ConfigError

SeenPair = tuple[str, int]


class CheckpointError(ConfigError):
    """A stored checkpoint that cannot be read: a bug or a foreign writer, never silently reset."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the next poll of one instance x resource starts from.

    `started_ms`: when polling began, the lower bound of the first filter-mode poll.
    `watermark_ms`: the newest updated date published (source clock), None before the first change.
    `cursor`: the change-tracking delta link, None before the baseline call.
    `seen`: (id, updated ms) pairs published inside the overlap window.
    `url`: the URL template the checkpoint belongs to; a changed template starts afresh.
    """

    started_ms: int
    url: str
    watermark_ms: int | None = None
    cursor: str | None = None
    seen: frozenset[SeenPair] = field(default_factory=frozenset)

    def window_start_ms(self, overlap_ms: int) -> int:
        """Records updated at or before this instant were published, or are too late to take."""
        base = self.watermark_ms if self.watermark_ms is not None else self.started_ms
        return base - overlap_ms


@dataclass(slots=True)
class WindowFilter:
    """Decides, record by record, what one filter-mode poll publishes, and the checkpoint after it."""

    checkpoint: Checkpoint
    overlap_ms: int
    _floor: int = 0
    _published: set[SeenPair] = field(default_factory=set)
    _newest: int | None = None

    def __post_init__(self) -> None:
        self._floor = self.checkpoint.window_start_ms(self.overlap_ms)
        self._newest = self.checkpoint.watermark_ms

    def admit(self, object_id: str, updated_ms: int) -> bool:
        pair = (object_id, updated_ms)
        if updated_ms <= self._floor or pair in self.checkpoint.seen or pair in self._published:
            return False
        self._published.add(pair)
        if self._newest is None or updated_ms > self._newest:
            self._newest = updated_ms
        return True

    def next_checkpoint(self) -> Checkpoint:
        if not self._published or self._newest is None:
            return self.checkpoint
        floor = self._newest - self.overlap_ms
        return Checkpoint(
            started_ms=self.checkpoint.started_ms,
            url=self.checkpoint.url,
            watermark_ms=self._newest,
            cursor=self.checkpoint.cursor,
            seen=_within(floor, self.checkpoint.seen, self._published),
        )


def _within(floor: int, *pair_sets: Iterable[SeenPair]) -> frozenset[SeenPair]:
    return frozenset(pair for pairs in pair_sets for pair in pairs if pair[1] > floor)
