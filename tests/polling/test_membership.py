"""Poller replicas in one consumer group: every instance is polled by exactly one replica."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.runtime import Endpoints, start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import ADMIN_TOKEN, seed_instance, wait_for
from tests.polling._support import create, only


def running(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gateway_pollers_running") or 0.0


def balanced(*replicas: Endpoints) -> bool:
    """Every replica holds partitions and has loaded them: the group has settled."""
    return all(r.membership is not None and r.membership.assigned.is_set() for r in replicas)


async def cluster(endpoints: Endpoints) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{endpoints.api_url}/cluster") as response,
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
