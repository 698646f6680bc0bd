"""Clocks and the timestamp format Dataverse uses: second precision, UTC, `Z`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """`2026-01-02T03:04:05Z`: Dataverse drops fractions of a second."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


class ManualClock:
    """A clock that moves only when told to, so tests of expiry and skew never sleep."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
