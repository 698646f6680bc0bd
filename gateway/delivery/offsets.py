"""Which offsets may be committed: per partition, the records read and not yet committed, in order.

Records of a partition finish in any order (a slow endpoint must not hold back a fast one), but an
offset is committed only when every record before it has finished: delivered, dropped, or with its
output (a parked retry, a dead letter) ready to be written in the same transaction as the commit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition

from gateway.delivery.outputs import Output


class _Entry:
    __slots__ = ("done", "offset", "outputs")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.done = False
        self.outputs: tuple[Output, ...] = ()


class PartitionWindow:
    def __init__(self) -> None:
        self._entries: deque[_Entry] = deque()
        self._by_offset: dict[int, _Entry] = {}
        self.unfinished = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, offset: int) -> None:
        """Offsets are added in increasing order, as the partition is read."""
        entry = _Entry(offset)
        self._entries.append(entry)
        self._by_offset[offset] = entry
        self.unfinished += 1

    def finish(self, offset: int, outputs: tuple[Output, ...] = ()) -> None:
        entry = self._by_offset.get(offset)
        if entry is None or entry.done:
            return
        entry.done = True
        entry.outputs = outputs
        self.unfinished -= 1

    def ready(self) -> tuple[int, int, list[Output]] | None:
        """(offset to commit, records it covers, their outputs), or None when nothing finished at
        the front. Nothing is removed until `confirm`, so a failed commit is simply tried again."""
        count = 0
        outputs: list[Output] = []
        for entry in self._entries:
            if not entry.done:
                break
            count += 1
            outputs.extend(entry.outputs)
        if not count:
            return None
        return self._entries[count - 1].offset + 1, count, outputs

    def confirm(self, count: int) -> None:
        for _ in range(count):
            entry = self._entries.popleft()
            del self._by_offset[entry.offset]


class Windows:
    """The windows of the partitions this consumer owns."""

    def __init__(self) -> None:
        self._windows: dict[TopicPartition, PartitionWindow] = {}

    def __contains__(self, tp: TopicPartition) -> bool:
        return tp in self._windows

    def get(self, tp: TopicPartition) -> PartitionWindow | None:
        return self._windows.get(tp)

    def open(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._windows.setdefault(tp, PartitionWindow())

    def close(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._windows.pop(tp, None)

    def items(self) -> list[tuple[TopicPartition, PartitionWindow]]:
        return list(self._windows.items())

    @property
    def unfinished(self) -> int:
        return sum(window.unfinished for window in self._windows.values())
