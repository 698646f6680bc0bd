"""Service protection: requests per sliding window and concurrent requests, per user."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.sim._clock import Clock
from gateway.sim._errors import CONCURRENCY_LIMIT, REQUEST_LIMIT, Throttled


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Dataverse's defaults: 6000 requests per 300 s sliding window and 52 at once, per user."""

    requests_per_window: int = 6000
    window_seconds: float = 300.0
    max_concurrent: int = 52

    def request_limit_message(self) -> str:
        return (
            f"Number of requests exceeded the limit of {self.requests_per_window} "
            f"over time window of {self.window_seconds:g} seconds."
        )


class ServiceProtection:
    """Admits or throttles each request of a principal; the window is measured by the simulator's clock."""

    def __init__(self, limits: Limits, clock: Clock) -> None:
        self.limits = limits
        self._clock = clock
        self._recent: defaultdict[str, deque[datetime]] = defaultdict(deque)
        self._running: defaultdict[str, int] = defaultdict(int)

    @contextmanager
    def admit(self, principal: str) -> Iterator[None]:
        limits = self.limits
        now = self._clock()
        recent = self._recent[principal]
        window = timedelta(seconds=limits.window_seconds)
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) >= limits.requests_per_window:
            wait = (recent[0] + window - now).total_seconds()
            raise Throttled(
                REQUEST_LIMIT, limits.request_limit_message(), retry_after=max(1, math.ceil(wait))
            )
        if self._running[principal] >= limits.max_concurrent:
            raise Throttled(
                CONCURRENCY_LIMIT,
                f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                retry_after=1,
            )
        recent.append(now)
        self._running[principal] += 1
        try:
            yield
        finally:
            self._running[principal] -= 1
