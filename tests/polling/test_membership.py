"""Poller replicas in one consumer group: every instance is polled by exactly one replica."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import KafkaMetrics, PollingMetrics, TaskMetrics
from gateway.polling.membership import MembershipConfig, PollerMembership
from gateway.polling.supervisor import PollerSupervisor
from gateway.runtime import RunningGateway, start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from gateway.tasks import Watchdog
from tests.conftest import ADMIN_TOKEN, seed_instance, wait_for
from tests.polling._support import create, only


def running(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gateway_pollers_running") or 0.0


def balanced(*replicas: RunningGateway) -> bool:
    """Every replica holds partitions and has loaded them: the group has settled."""
    return all(r.membership is not None and r.membership.assigned.is_set() for r in replicas)


async def cluster(gateway: RunningGateway) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{gateway.api_url}/cluster") as response,
    ):
        assert response.status == 200
        payload: dict[str, Any] = await response.json()
        return payload


async def test_two_replicas_split_the_instances_and_one_takes_all_when_the_other_stops(
    settings: Settings, simulator: Simulator
) -> None:
    settings = settings.model_copy(update={"state_partitions": 4, "poller_session_timeout_seconds": 6.0})
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    async with start_gateway(
        settings.model_copy(update={"group_instance_id": "replica-a"}), registry=first_registry
    ) as first:
        second_settings = settings.model_copy(update={"group_instance_id": "replica-b"})
        async with start_gateway(second_settings, registry=second_registry) as second:
            async with aiohttp.ClientSession(
                base_url=first.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as api:
                ids = [
                    await create(api, only(seed_instance("2016", simulator), "accounts")) for _ in range(8)
                ]
            await wait_for(
                lambda: balanced(first, second) and running(first_registry) + running(second_registry) == 8,
                within=30,
            )
            view = await cluster(first)
            assert {r["replica"] for r in view["replicas"]} == {"replica-a", "replica-b"}
            polled = [i for r in view["replicas"] for i in r["instances"]]
            assert sorted(polled) == sorted(ids)  # each instance by exactly one replica
            assert all(r["partitions"] for r in view["replicas"])  # and both replicas have work
            assert view["unownedPartitions"] == []
        # The second replica left the group: the first takes every partition over.
        await wait_for(lambda: running(first_registry) == 8, within=30)
        view = await cluster(first)
        assert [r["replica"] for r in view["replicas"]] == ["replica-a"]
        assert sorted(view["replicas"][0]["instances"]) == sorted(ids)


async def test_a_replica_takes_many_partitions_over_within_its_session_timeout(settings: Settings) -> None:
    """aiokafka heartbeats only once the assignment callback returns: taking partitions over one after
    the other (about a second each) outlasted the session, and the broker dropped the replica again."""
    settings = settings.model_copy(update={"state_partitions": 24, "poller_session_timeout_seconds": 6.0})
    async with start_gateway(settings, role="poller", registry=CollectorRegistry()) as replica:
        membership = replica.membership
        assert membership is not None
        loop = asyncio.get_running_loop()
        await wait_for(lambda: len(membership._assignment) == 24, within=30)  # the callback began
        given = loop.time()
        await wait_for(membership.assigned.is_set, within=30)
        assert loop.time() - given < settings.poller_session_timeout_seconds
        assert membership.partitions == list(range(24))


async def test_a_fenced_writer_may_take_its_id_back_only_for_a_partition_the_group_gives_it(
    settings: Settings,
) -> None:
    """A replica paused past its session resumes its polls before a heartbeat tells it its partitions
    moved: its own view is stale, so the group coordinator decides whether it still owns one."""
    settings = settings.model_copy(update={"state_partitions": 4, "poller_session_timeout_seconds": 6.0})
    async with (
        start_gateway(settings.model_copy(update={"group_instance_id": "replica-a"})) as first,
        start_gateway(settings.model_copy(update={"group_instance_id": "replica-b"})) as second,
    ):
        await wait_for(lambda: balanced(first, second), within=30)
        assert first.membership is not None
        assert second.membership is not None
        own, other = first.membership.partitions[0], second.membership.partitions[0]
        assert await first.membership._still_owned(own)
        first.membership._assignment.add(other)  # as stale as a paused replica's view
        assert not await first.membership._still_owned(other)


async def test_replicas_that_joined_before_the_instances_topic_existed_are_assigned_its_partitions(
    settings: Settings, registry: CollectorRegistry
) -> None:
    """A group leader that did not know the topic yet assigns nothing; a metadata refresh that finds the
    partitions makes it rebalance (a broker restarting, or a topic just created on another broker)."""
    bootstrap = settings.kafka_bootstrap_servers
    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    metrics = PollingMetrics(registry)
    kafka_metrics = KafkaMetrics(registry)
    watchdog = Watchdog(TaskMetrics(registry))
    config = MembershipConfig(
        bootstrap_servers=bootstrap,
        instances_topic=topics.instances,
        checkpoints_topic=topics.checkpoints,
        row_state_topic=None,  # this test creates no row-state topic
        group_id=f"{settings.state_topic_prefix}-pollers",
        group_instance_id=None,
        replica_id="early-replica",
        session_timeout_ms=6000,
    )
    async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
        await admin.ensure(topics.checkpoints, partitions=2, compacted=True)
        supervisor = PollerSupervisor(
            source_factory=lambda _instance: pytest.fail("no instance is stored"),
            admin=admin,
            topics=topics,
            state_partitions=2,
            topic_partitions=1,
            overlap_seconds=5.0,
            poll_concurrency=1,
            metrics=metrics,
            watchdog=watchdog,
        )
        async with (
            supervisor,
            PollerMembership(
                config,
                supervisor=supervisor,
                writer_factory=lambda partition, owned: TransactionalWriter(
                    bootstrap_servers=bootstrap,
                    transactional_id=f"{settings.state_topic_prefix}-poller-{partition}",
                    metrics=kafka_metrics,
                    may_recover=owned,
                ),
                decode_instance=lambda _id, _value: None,
                metrics=metrics,
                admin=admin,
                watchdog=watchdog,
            ) as membership,
        ):
            await wait_for(lambda: registry.get_sample_value("gateway_poller_rebalances_total") == 1)
            await admin.ensure(topics.instances, partitions=2, compacted=True)
            await wait_for(membership.assigned.is_set, within=20)
            assert membership.partitions == [0, 1]
