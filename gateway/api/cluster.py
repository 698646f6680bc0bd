"""GET /cluster: the poller replicas, the state partitions each owns and the instances each polls."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import ChainMapProxy, web

from gateway.api.instances import INSTANCE_LOG
from gateway.api.responses import json_response
from gateway.kafka.partitioning import state_partition
from gateway.kafka.topics import TopicAdmin


@dataclass(frozen=True, slots=True)
class PollerGroup:
    admin: TopicAdmin
    group_id: str
    instances_topic: str
    partitions: int


POLLER_GROUP = web.AppKey("poller_group", PollerGroup)


async def cluster_view(app: web.Application | ChainMapProxy) -> dict[str, Any]:
    """The poller group as Kafka describes it: GET /cluster, and the console's overview."""
    group = app[POLLER_GROUP]
    description = await group.admin.describe_group(group.group_id)
    by_partition: dict[int, list[str]] = defaultdict(list)
    for instance_id in app[INSTANCE_LOG].ids():
        by_partition[state_partition(instance_id, group.partitions)].append(instance_id)
    replicas = []
    owned: set[int] = set()
    for member in description.members:
        partitions = sorted(p for topic, p in member.partitions if topic == group.instances_topic)
        owned.update(partitions)
        replicas.append(
            {
                "replica": member.client_id,
                "host": member.host,
                "partitions": partitions,
                "instances": sorted(i for p in partitions for i in by_partition[p]),
            }
        )
    unowned = [p for p in range(group.partitions) if p not in owned]
    return {
        "group": group.group_id,
        "state": description.state,
        "replicas": replicas,
        "unownedPartitions": unowned,
        "unpolledInstances": sorted(i for p in unowned for i in by_partition[p]),
    }


async def get_cluster(request: web.Request) -> web.Response:
    return json_response(await cluster_view(request.app))


def add_cluster_routes(app: web.Application, group: PollerGroup) -> None:
    app[POLLER_GROUP] = group
    app.router.add_get("/cluster", get_cluster)
