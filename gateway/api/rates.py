"""Changes and deliveries per minute over the last hour, from this process's own counters.

The counters only grow, so a snapshot at each minute's start is enough: a minute's count is the
difference of two snapshots, and the current minute's is the counters now less its snapshot. Sixty
snapshots of a few labels each cost nothing; no history goes to Kafka.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web
from prometheus_client import CollectorRegistry

MINUTES = 60
_EVENTS = "gateway_events_published_total"
_ATTEMPTS = "gateway_delivery_attempts_total"


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    changes: Mapping[str, float]  # by object type
    deliveries: Mapping[str, float]  # by outcome


@dataclass(frozen=True, slots=True)
class Series:
    """Counts per minute, oldest first; the last minute is the current one, so far."""

    minutes: tuple[float, ...]  # each minute's start, epoch seconds
    changes: Mapping[str, tuple[int, ...]]
    deliveries: Mapping[str, tuple[int, ...]]


def _totals(registry: CollectorRegistry, sample_name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == sample_name:
                key = sample.labels.get(label, "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _differences(
    snapshots: list[Mapping[str, float]],
) -> dict[str, tuple[int, ...]]:
    keys = sorted({key for snapshot in snapshots for key in snapshot})
    return {
        key: tuple(
            max(0, round(after.get(key, 0.0) - before.get(key, 0.0)))
            for before, after in itertools.pairwise(snapshots)
        )
        for key in keys
    }


class MinuteRates:
    """Keeps the last hour's minute snapshots; an async context manager that owns its sampling task."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._snapshots: deque[_Snapshot] = deque(maxlen=MINUTES)
        self._task: asyncio.Task[None] | None = None
        self._state = _State.NEW

    def _snapshot(self, at: float) -> _Snapshot:
        return _Snapshot(
            at=at,
            changes=_totals(self._registry, _EVENTS, "object_type"),
            deliveries=_totals(self._registry, _ATTEMPTS, "outcome"),
        )

    async def __aenter__(self) -> MinuteRates:
        if self._state is not _State.NEW:
            raise RuntimeError("minute rates cannot be started twice")
        self._state = _State.RUNNING
        now = time.time()
        self._snapshots.append(self._snapshot(now - now % 60))
        self._task = asyncio.create_task(self._sample(), name="minute-rates")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise

    async def _sample(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(60 - now % 60)
            now = time.time()
            self._snapshots.append(self._snapshot(now - now % 60))

    def series(self) -> Series:
        """Each kept minute and the current one: at most the last hour."""
        kept = list(self._snapshots)
        current = self._snapshot(time.time())
        return Series(
            minutes=tuple(s.at for s in kept),
            changes=_differences([*(s.changes for s in kept), current.changes]),
            deliveries=_differences([*(s.deliveries for s in kept), current.deliveries]),
        )


RATES = web.AppKey("minute_rates", MinuteRates)
