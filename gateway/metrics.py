"""Prometheus metrics, grouped per stage. Each group registers into the registry it is given,
so that tests can use a fresh CollectorRegistry and a process uses `process_registry()`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aiokafka.errors import KafkaError
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def process_registry() -> CollectorRegistry:
    """The registry of a gateway process: the standard process, platform and GC collectors, to which
    each stage adds its own."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class TaskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.crashes = Counter(
            "gateway_task_crashes_total",
            "Background tasks that ended by themselves, by task: a crashed `poller` is restarted after a "
            "backoff; any other (poller-membership, tail-<topic>, deliverer) ends the process.",
            ["task"],
            registry=registry,
        )


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
        self.records_too_large = Counter(
            "gateway_records_too_large_total",
            "Polls that failed because a record they wrote (record: event, checkpoint) was over a size "
            "limit. Retrying cannot help: the resource makes no progress until the cause is fixed.",
            ["resource", "record"],
            registry=registry,
        )
        self.unchanged_rows = Counter(
            "gateway_unchanged_rows_total",
            "Rows the source reported as changed whose columns were as last published (a save without "
            "changes, a re-read): no event.",
            ["resource"],
            registry=registry,
        )
        self.deletes_found = Counter(
            "gateway_deleted_rows_found_total",
            "Rows gone from the source that a filter-mode resource's delete check found: each published "
            "once as DELETED. The check lists every id of the table (deletesCheckInterval).",
            ["resource"],
            registry=registry,
        )
        self.resyncs = Counter(
            "gateway_resyncs_total",
            "Change-tracking resynchronisations: the source refused the stored cursor, so a full snapshot "
            "was read and only what differed from the last published state was published.",
            ["resource"],
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


class _Consumer(Protocol):
    """What the lag is computed from: the public, synchronous parts of an AIOKafkaConsumer."""

    def assignment(self) -> Any: ...
    def highwater(self, tp: Any) -> int | None: ...
    def last_stable_offset(self, tp: Any) -> int | None: ...
    def position(self, tp: Any) -> Any: ...


def _position_now(consumer: _Consumer, tp: Any) -> int | None:
    """The consumer's position in `tp`, if it knows it. aiokafka's `position()` is a coroutine only
    because it may have to wait for an offset reset; when the position is known it returns without
    suspending. It is stepped here instead of awaited, so that a scrape never waits: an unknown
    position gives None, and the coroutine is closed before it waits for anything."""
    step = consumer.position(tp)
    try:
        step.send(None)
    except StopIteration as done:
        return int(done.value)
    except (KafkaError, RuntimeError):  # unassigned meanwhile; no running loop
        return None
    step.close()
    return None


class ConsumerLag(Collector):
    """`gateway_kafka_consumer_lag`: records not yet read by this process's group consumers, per
    partition assigned to them, computed at scrape time.

    Lag is the partition's end as of the consumer's last fetch (the last stable offset for a
    read_committed consumer, so that an open transaction's records do not count, else the high
    watermark) minus the consumer's position. A partition not fetched yet has no sample.
    """

    def __init__(self) -> None:
        self._consumers: dict[int, tuple[str, _Consumer]] = {}

    def track(self, group: str, consumer: _Consumer) -> None:
        self._consumers[id(consumer)] = (group, consumer)

    def forget(self, consumer: _Consumer) -> None:
        self._consumers.pop(id(consumer), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gateway_kafka_consumer_lag",
            "Records a consumer group of this process has yet to read, per assigned partition.",
            labels=["group", "topic", "partition"],
        )
        for group, consumer in list(self._consumers.values()):
            for tp in sorted(consumer.assignment()):
                stable = consumer.last_stable_offset(tp)
                end = stable if stable is not None and stable >= 0 else consumer.highwater(tp)
                position = _position_now(consumer, tp)
                if end is None or position is None:
                    continue
                family.add_metric([group, tp.topic, str(tp.partition)], max(end - position, 0))
        yield family


_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
        self.produce_latency = Histogram(
            "gateway_kafka_produce_seconds",
            "From a send to the broker's acknowledgement, sampled on the first record of each transaction.",
            buckets=_PRODUCE_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = ConsumerLag()
        registry.register(self.consumer_lag)


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
            "Events dead-lettered, by reason (retries-exhausted, endpoint-gone, endpoint-disabled, "
            "callback-refused, not-deliverable).",
            ["reason"],
            registry=registry,
        )
        self.deferred = Counter(
            "gateway_delivery_deferred_total",
            "Events parked without an attempt, by outcome (skipped: their host is slow and its backlog "
            "full; rate-limited: their subscription's rate limit had no turn for them within a second).",
            ["outcome"],
            registry=registry,
        )
        self.alerts = Counter(
            "gateway_delivery_alerts_total",
            "Alerts raised, by kind (delivery.exhausted: an event's retries ran out; endpoint.disabled: "
            "an endpoint answered 410 Gone or failed too long), whether or not an alerts subscription "
            "receives them.",
            ["kind"],
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
            "Endpoints (instance callbacks and subscriptions) disabled by a 410 Gone or by failing "
            "longer than GATEWAY_DELIVERY_DISABLE_AFTER_HOURS, until their instance changes or goes.",
            registry=registry,
        )
        self.failing_endpoints = Gauge(
            "gateway_delivery_failing_endpoints",
            "Endpoints whose every attempt failed since their last delivery or their instance's last "
            "change, the last one recently: the ones an outage of GATEWAY_DELIVERY_DISABLE_AFTER_HOURS "
            "would disable.",
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
