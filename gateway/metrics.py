"""Prometheus metrics, grouped per stage. Each group registers into the registry it is given,
so that tests can use a fresh CollectorRegistry and a process uses the default one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class SourceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_source_requests_total",
            "HTTP requests to CRM APIs, by element and status class (2xx, 4xx, 5xx, error).",
            ["element", "status_class"],
            registry=registry,
        )
        self.throttled = Counter(
            "gateway_source_throttled_total",
            "429 answers from CRM APIs.",
            ["element"],
            registry=registry,
        )
        self.retry_after_seconds = Histogram(
            "gateway_source_retry_after_seconds",
            "Retry-After delays honoured after a 429.",
            ["element"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.token_refreshes = Counter(
            "gateway_source_token_refreshes_total",
            "OAuth tokens obtained from token endpoints.",
            ["element"],
            registry=registry,
        )


class CheckpointAges(Collector):
    """`gateway_checkpoint_age_seconds`: how far behind now each resource's committed position is.

    Computed at scrape time from each poller's last successful poll, so the age keeps growing while a
    poller is stuck. Without per-instance labels, each resource reports its oldest instance.
    """

    def __init__(self, *, per_instance: bool) -> None:
        self._per_instance = per_instance
        self._positions: dict[tuple[str, str], Callable[[], float | None]] = {}

    def track(self, instance_id: str, resource: str, position: Callable[[], float | None]) -> None:
        self._positions[(instance_id, resource)] = position

    def forget(self, instance_id: str, resource: str) -> None:
        self._positions.pop((instance_id, resource), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["instance_id", "resource"] if self._per_instance else ["resource"]
        family = GaugeMetricFamily(
            "gateway_checkpoint_age_seconds",
            "Seconds since the start of the last poll whose changes are committed, per resource.",
            labels=labels,
        )
        now = time.time()
        ages: dict[tuple[str, ...], float] = {}
        for (instance_id, resource), position in list(self._positions.items()):
            committed = position()
            if committed is None:
                continue
            key: tuple[str, ...] = (instance_id, resource) if self._per_instance else (resource,)
            ages[key] = max(ages.get(key, 0.0), now - committed)
        for key, age in ages.items():
            family.add_metric(list(key), age)
        yield family


class PollingMetrics:
    def __init__(self, registry: CollectorRegistry, *, per_instance: bool = False) -> None:
        self.polls = Counter(
            "gateway_polls_total",
            "Completed polls by outcome (ok, failed).",
            ["resource", "outcome"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            "gateway_poll_duration_seconds",
            "Duration of one poll, from its first request to its committed transaction.",
            ["resource"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.records_fetched = Counter(
            "gateway_records_fetched_total", "Records read from sources.", ["resource"], registry=registry
        )
        self.records_skipped = Counter(
            "gateway_records_skipped_total",
            "Records skipped because their id or date was missing or unparsable.",
            ["resource", "reason"],
            registry=registry,
        )
        self.events_published = Counter(
            "gateway_events_published_total",
            "Change events committed to Kafka.",
            ["object_type", "event_type"],
            registry=registry,
        )
        self.checkpoint_ages = CheckpointAges(per_instance=per_instance)
        registry.register(self.checkpoint_ages)
        self.pollers_running = Gauge("gateway_pollers_running", "Poller tasks running.", registry=registry)
        self.partitions_owned = Gauge(
            "gateway_poller_partitions_owned",
            "State partitions (and so instances) this poller replica owns.",
            registry=registry,
        )
        self.rebalances = Counter(
            "gateway_poller_rebalances_total",
            "Poller group rebalances this replica took part in.",
            registry=registry,
        )


class KafkaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.transactions = Counter(
            "gateway_kafka_transactions_total",
            "Kafka transactions by outcome (committed, aborted).",
            ["outcome"],
            registry=registry,
        )
        self.commit_duration = Histogram(
            "gateway_kafka_transaction_commit_seconds",
            "Time to commit one transaction, its produce included.",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )


_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 21600, 86400, 259200)


class DeliveryMetrics:
    """Webhook delivery. Labels are bounded sets: outcomes, status classes, retry tiers and reasons,
    never URLs or hosts; the per-instance counter exists only when asked for."""

    def __init__(self, registry: CollectorRegistry, *, per_instance: bool = False) -> None:
        self.attempts = Counter(
            "gateway_delivery_attempts_total",
            "Webhook attempts by outcome (delivered, failed, throttled, gone, timeout, unreachable, "
            "refused, skipped) and status class (2xx, 3xx, 4xx, 5xx, none).",
            ["outcome", "status_class"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "gateway_delivery_request_seconds",
            "Duration of one webhook request, by status class.",
            ["status_class"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "gateway_delivery_end_to_end_seconds",
            "From a change at the source (the event's `time`) to its successful delivery.",
            buckets=_DELAY_BUCKETS,
            registry=registry,
        )
        self.parked = Counter(
            "gateway_delivery_parked_total",
            "Events parked in a retry topic, by tier.",
            ["tier"],
            registry=registry,
        )
        self.retries_pending = Gauge(
            "gateway_delivery_retries_pending",
            "Records waiting in the retry topics' partitions this process reads, by tier (best effort).",
            ["tier"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "gateway_delivery_dead_letters_total",
            "Events dead-lettered, by reason (retries-exhausted, endpoint-gone, callback-refused, "
            "not-deliverable).",
            ["reason"],
            registry=registry,
        )
        self.replays = Counter(
            "gateway_delivery_replays_total", "Dead letters sent again by a replay.", registry=registry
        )
        self.dropped = Counter(
            "gateway_delivery_dropped_total",
            "Events not delivered on purpose, by reason (instance-deleted, notifications-off, undecodable).",
            ["reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "gateway_delivery_in_flight", "Webhook requests in flight in this process.", registry=registry
        )
        self.pending = Gauge(
            "gateway_delivery_pending",
            "Events read from Kafka and not yet delivered, parked or dead-lettered in this process.",
            registry=registry,
        )
        self.open_circuits = Gauge(
            "gateway_delivery_open_circuits",
            "Callback hosts whose circuit breaker is open or half-open, in this process.",
            registry=registry,
        )
        self.disabled_instances = Gauge(
            "gateway_delivery_disabled_instances",
            "Instances whose notifications a 410 Gone disabled, until their next change.",
            registry=registry,
        )
        self.instance_attempts: Counter | None = None
        if per_instance:
            self.instance_attempts = Counter(
                "gateway_delivery_instance_attempts_total",
                "Webhook attempts per instance, by outcome (GATEWAY_METRICS_PER_INSTANCE).",
                ["instance", "outcome"],
                registry=registry,
            )
