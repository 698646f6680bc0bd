"""Prometheus metrics, grouped per stage. Each group registers into the registry it is given,
so that tests can use a fresh CollectorRegistry and a process uses the default one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


class PollingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
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
        self.checkpoint_age = Gauge(
            "gateway_checkpoint_age_seconds",
            "Now minus the last committed watermark, per instance and resource.",
            ["instance", "resource"],
            registry=registry,
        )
        self.pollers_running = Gauge("gateway_pollers_running", "Poller tasks running.", registry=registry)


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
