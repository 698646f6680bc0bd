"""Instances whose notifications a 410 Gone disabled, kept in the compacted delivery-state topic.

A marker, keyed by instance id, records the instance's *revision* when its receiver answered 410.
While the instance keeps that revision its events are dead-lettered (reason `endpoint-gone`) without
a request, so a replay can send them once the receiver is back. Any change of the instance (a PATCH)
gives it a new revision, which lifts the marker: the next event of the instance writes a tombstone.

The revision is the stored body's `updatedDate` when the caller can tell it (`RevisionLookup`),
since every PATCH sets it; otherwise a digest of the instance's configuration without its secrets
(a PATCH that changes nothing then does not re-enable).

Every deliverer replica tails the topic. A replica that sees a 410 also marks the instance in memory
at once; the marker record itself is written with the offset commit of the event that saw the 410.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import orjson

from gateway.delivery.outputs import Output
from gateway.instances import SECRET_KEYS
from gateway.instances.model import Instance
from gateway.kafka.compacted import CompactedTopicTable
from gateway.kafka.partitioning import state_partition
from gateway.metrics import DeliveryMetrics
from gateway.tasks import Watchdog

logger = logging.getLogger(__name__)

RevisionLookup = Callable[[str], str | None]
Status = Literal["enabled", "disabled", "lifted"]


@dataclass(frozen=True, slots=True)
class _Marker:
    revision: str
    status: int
    at_ms: int

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"disabled": True, "revision": self.revision, "status": self.status, "atMs": self.at_ms}
        )

    @classmethod
    def from_json(cls, value: bytes) -> _Marker:
        data = orjson.loads(value)
        return cls(str(data["revision"]), int(data["status"]), int(data["atMs"]))


def configuration_digest(instance: Instance) -> str:
    public = {k: v for k, v in instance.configuration.items() if k not in SECRET_KEYS}
    canonical = orjson.dumps(public, option=orjson.OPT_SORT_KEYS, default=str)
    return "config:" + hashlib.sha256(canonical).hexdigest()[:32]


class DisabledInstances:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        metrics: DeliveryMetrics,
        watchdog: Watchdog,
        revisions: RevisionLookup | None = None,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._metrics = metrics
        self._revisions = revisions
        self._markers: dict[str, _Marker] = {}
        self._table = CompactedTopicTable(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            partitions=partitions,
            listener=self._on_record,
            watchdog=watchdog,
        )

    async def __aenter__(self) -> DisabledInstances:
        await self._table.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._table.__aexit__(exc_type, exc, tb)

    def revision(self, instance: Instance) -> str:
        updated = None if self._revisions is None else self._revisions(instance.id)
        return f"updated:{updated}" if updated else configuration_digest(instance)

    def status(self, instance_id: str, revision: str) -> Status:
        marker = self._markers.get(instance_id)
        if marker is None:
            return "enabled"
        return "disabled" if marker.revision == revision else "lifted"

    def disable(self, instance_id: str, revision: str, *, status: int, at_ms: int) -> Output:
        marker = _Marker(revision, status, at_ms)
        if instance_id not in self._markers:
            logger.warning(
                "callback answered %d: notifications disabled until the instance changes",
                status,
                extra={"instance_id": instance_id},
            )
        self._set(instance_id, marker)
        return self._output(instance_id, marker.to_json())

    def lift(self, instance_id: str) -> Output:
        """Forget the marker of a changed instance; the tombstone goes with the caller's commit."""
        if self._markers.pop(instance_id, None) is not None:
            logger.info("instance changed: notifications enabled again", extra={"instance_id": instance_id})
            self._metrics.disabled_instances.set(len(self._markers))
        return self._output(instance_id, None)

    def _output(self, instance_id: str, value: bytes | None) -> Output:
        return Output(
            topic=self._topic,
            key=instance_id.encode(),
            value=value,
            partition=state_partition(instance_id, self._partitions),
        )

    def _set(self, instance_id: str, marker: _Marker) -> None:
        self._markers[instance_id] = marker
        self._metrics.disabled_instances.set(len(self._markers))

    async def _on_record(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._markers.pop(key, None)
            self._metrics.disabled_instances.set(len(self._markers))
            return
        try:
            self._set(key, _Marker.from_json(value))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("ignoring a malformed delivery-state record", extra={"instance_id": key})
