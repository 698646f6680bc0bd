"""`event-gateway reencrypt`: rewrite every stored instance whose secrets the current key did not encrypt.

The rotation of GATEWAY_SECRET_KEY: set the new key, keep the old one in GATEWAY_SECRET_KEY_PREVIOUS,
restart the replicas, run this once, then drop the old key. Instances stored in plaintext by an older
version are encrypted by the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.instances.log import Body, InstanceLog
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.metrics import TaskMetrics
from gateway.runtime import secret_box
from gateway.settings import Settings
from gateway.tasks import Watchdog


@dataclass(frozen=True, slots=True)
class Reencrypted:
    stored: int  # instances found
    rewritten: tuple[str, ...]  # ids of those written again


async def reencrypt_instances(settings: Settings) -> Reencrypted:
    """Every stored body is decrypted (with the current key or a previous one) before any is written,
    as loading the instance log decodes every body, so a body no configured key can decrypt stops the
    run with nothing rewritten."""
    box = secret_box(settings)
    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    bootstrap = settings.kafka_bootstrap_servers
    async with TopicAdmin(
        bootstrap_servers=bootstrap, replication_factor=settings.topic_replication_factor
    ) as admin:
        await admin.ensure(topics.instances, partitions=settings.state_partitions, compacted=True)
    async with InstanceLog(
        bootstrap_servers=bootstrap,
        topic=topics.instances,
        partitions=settings.state_partitions,
        box=box,
        listener=_ignore,
        watchdog=Watchdog(TaskMetrics(CollectorRegistry())),
    ) as log:
        rewritten = await log.reencrypt()
        return Reencrypted(stored=len(log.ids()), rewritten=tuple(rewritten))


async def _ignore(_instance_id: str, _body: Body | None) -> None:
    return None
