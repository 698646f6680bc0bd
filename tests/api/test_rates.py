from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.api.rates import MinuteRates
from gateway.metrics import DeliveryMetrics, PollingMetrics


async def test_the_current_minute_counts_what_happened_since_its_snapshot() -> None:
    registry = CollectorRegistry()
    polling, delivery = PollingMetrics(registry), DeliveryMetrics(registry)
    polling.events_published.labels(object_type="accounts", event_type="CREATED").inc(5)
    async with MinuteRates(registry) as rates:
        polling.events_published.labels(object_type="accounts", event_type="CREATED").inc(2)
        polling.events_published.labels(object_type="accounts", event_type="UPDATED").inc(1)
        polling.events_published.labels(object_type="contacts", event_type="CREATED").inc(4)
        delivery.attempts.labels(outcome="failed", status_class="5xx").inc(3)
        series = rates.series()
    assert len(series.minutes) == 1
    # What was counted before the snapshot is not this minute's.
    assert series.changes == {"accounts": (3,), "contacts": (4,)}
    assert series.deliveries == {"failed": (3,)}


async def test_minute_rates_cannot_be_started_twice() -> None:
    rates = MinuteRates(CollectorRegistry())
    async with rates:
        pass
    with pytest.raises(RuntimeError, match="twice"):
        async with rates:
            pass
