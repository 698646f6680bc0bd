"""A poller that crashes (a bug, not a failed poll: those are counted and retried inside the poller)
is restarted by its supervisor after a backoff that doubles, and each crash is counted; the process
stays healthy, and the restarted poller goes on polling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from gateway.instances import validate_instance
from gateway.instances.model import Instance
from gateway.kafka.partitioning import state_partition
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import KafkaMetrics, PollingMetrics, TaskMetrics
from gateway.polling.supervisor import PollerSupervisor
from gateway.settings import Settings
from gateway.sim import Simulator
from gateway.sources.base import FetchRequest, SourcePage
from gateway.tasks import Watchdog
from tests.conftest import seed_instance, wait_for
from tests.polling._support import only, polls

CRASHES = 2


class Bug(Exception):
    """What a programming error in a source adapter raises: not a SourceError."""


class CrashingSource:
    """A source whose first polls hit a bug; then it answers with no changes."""

    def __init__(self, crashes: int) -> None:
        self.calls = 0
        self._crashes = crashes

    async def pages(self, request: FetchRequest) -> AsyncIterator[SourcePage]:
        self.calls += 1
        if self.calls <= self._crashes:
            raise Bug(f"crash {self.calls}")
        yield SourcePage(records=[])


async def test_a_crashed_poller_is_restarted_with_a_growing_backoff_and_counted(
    settings: Settings,
    simulator: Simulator,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = only(seed_instance("2016", simulator), "accounts")
    instance: Instance = validate_instance(body, instance_id="crashing-1").instance
    partition = state_partition(instance.id, settings.state_partitions)
    source = CrashingSource(CRASHES)
    metrics = PollingMetrics(registry)
    watchdog = Watchdog(TaskMetrics(registry))
    bootstrap = settings.kafka_bootstrap_servers
    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
        # A poll that found nothing still commits its first checkpoint.
        await admin.ensure(topics.checkpoints, partitions=settings.state_partitions, compacted=True)
    async with (
        TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin,
        TransactionalWriter(
            bootstrap_servers=bootstrap,
            transactional_id=f"{settings.state_topic_prefix}-poller-{partition}",
            metrics=KafkaMetrics(registry),
        ) as writer,
        PollerSupervisor(
            source_factory=lambda _instance: source,
            admin=admin,
            topics=topics,
            state_partitions=settings.state_partitions,
            topic_partitions=1,
            overlap_seconds=5.0,
            poll_concurrency=1,
            metrics=metrics,
            watchdog=watchdog,
        ) as supervisor,
    ):
        supervisor.acquire(partition, writer, {})
        with caplog.at_level(logging.ERROR, logger="gateway.polling.supervisor"):
            await supervisor.apply(instance.id, instance)
            # 1 s after the first crash, 2 s after the second.
            await wait_for(lambda: polls(registry, "accounts") >= 1, within=10)
        crashes = registry.get_sample_value("gateway_task_crashes_total", {"task": "poller"})
        running = registry.get_sample_value("gateway_pollers_running")
        healthy = watchdog.healthy()
    assert crashes == CRASHES
    assert running == 1  # the same poller throughout, never stopped
    assert healthy
    assert [r.getMessage() for r in caplog.records] == [
        "poller crashed; restarting it in 1 s",
        "poller crashed; restarting it in 2 s",
    ]
    assert all(r.exc_info and isinstance(r.exc_info[1], Bug) for r in caplog.records)
    assert caplog.records[0].__dict__["error"] == "Bug"
