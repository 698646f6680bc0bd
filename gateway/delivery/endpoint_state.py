"""Each endpoint's delivery state, kept in the compacted delivery-state topic: failing since when,
or disabled, and why.

An endpoint is an instance's own callback (keyed by the instance id) or one of its subscriptions
(`<instanceId>/<subscriptionId>`). Its record is one of:

- `{"deliveredAt": ms}` or `{"liftedAt": ms}` (or none): healthy;
- `{"failingSince": ms}`: every attempt since then failed, which a delivery ends;
- `{"disabled": true, "cause": "gone" | "outage", "revision": ..., "status": ..., "atMs": ms}`:
  disabled by a 410 Gone, or by failing for `GATEWAY_DELIVERY_DISABLE_AFTER_HOURS` (Svix's rule,
  five days by default), at the instance's revision then. A record without `cause` is a 410's.

Each record carries the time of the attempt that wrote it, and a record older than the state an
endpoint has is ignored: one endpoint's records are written with the commits of different input
partitions, which land in any order, so a delayed record must not undo a newer one.

While the instance keeps that revision the endpoint's events are dead-lettered (reason
`endpoint-gone` or `endpoint-disabled`) without a request, so a replay can send them once the
receiver is back. Any change of the instance (a PATCH) gives it a new revision, which lifts the
marker: the next event of the endpoint writes `liftedAt`.

The revision is the stored body's `updatedDate` when the caller can tell it (`RevisionLookup`),
since every PATCH sets it; otherwise a digest of the instance's configuration without its secrets
(a PATCH that changes nothing then does not re-enable).

Every deliverer replica tails the topic. A replica also changes its own view at once; the record
itself is written with the offset commit of the event that changed it. Replicas delivering to one
endpoint at the same moment may each start its failing streak before reading the other's, the later
start then winning: an outage is measured from within that much of its first failure.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.delivery.outputs import Output
from gateway.events import rfc3339
from gateway.instances import SECRET_KEYS
from gateway.instances.model import Instance
from gateway.kafka.compacted import CompactedTopicTable
from gateway.kafka.partitioning import state_partition
from gateway.metrics import DeliveryMetrics
from gateway.tasks import Watchdog

logger = logging.getLogger(__name__)

RevisionLookup = Callable[[str], str | None]
Status = Literal["enabled", "disabled", "lifted"]
Cause = Literal["gone", "outage"]


@dataclass(frozen=True, slots=True)
class Disabled:
    cause: Cause
    revision: str
    status: int | None  # the receiver's last answer; None when it gave none (a timeout)
    at_ms: int

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "disabled": True,
                "cause": self.cause,
                "revision": self.revision,
                "status": self.status,
                "atMs": self.at_ms,
            }
        )


def _read(value: bytes) -> tuple[int, Disabled | int | None]:
    """A record's time and what it says: a marker, the start (epoch ms) of a failing streak, or
    None: healthy."""
    data = orjson.loads(value)
    if data.get("disabled"):
        cause: Cause = "outage" if data.get("cause") == "outage" else "gone"
        status = data.get("status")
        at_ms = int(data["atMs"])
        return at_ms, Disabled(cause, str(data["revision"]), None if status is None else int(status), at_ms)
    if "failingSince" in data:
        since = int(data["failingSince"])
        return since, since
    return int(data.get("deliveredAt", data.get("liftedAt"))), None


def endpoint_key(instance_id: str, subscription_id: str | None) -> str:
    """An endpoint's key in the topic: each subscription fails and is disabled on its own."""
    return instance_id if subscription_id is None else f"{instance_id}/{subscription_id}"


def body_revision(updated_date: str) -> str:
    """The revision of a stored instance body, from its `updatedDate`, which every change sets."""
    return f"updated:{updated_date}"


def configuration_digest(instance: Instance) -> str:
    public = {k: v for k, v in instance.configuration.items() if k not in SECRET_KEYS}
    canonical = orjson.dumps(public, option=orjson.OPT_SORT_KEYS, default=str)
    return "config:" + hashlib.sha256(canonical).hexdigest()[:32]


class EndpointStates:
    """The endpoints' states as this replica knows them. `apply_record` takes in the topic's records
    (`tail_endpoint_states` feeds it the topic); the methods that change a state give the record
    to write with the caller's commit."""

    def __init__(
        self,
        *,
        topic: str,
        partitions: int,
        metrics: DeliveryMetrics,
        revisions: RevisionLookup | None = None,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._metrics = metrics
        self._revisions = revisions
        self._disabled: dict[str, Disabled] = {}
        self._failing: dict[str, int] = {}  # endpoint -> start of its failing streak, epoch ms
        self._newest: dict[str, int] = {}  # endpoint -> time of the newest record it has

    def revision(self, instance: Instance) -> str:
        updated = None if self._revisions is None else self._revisions(instance.id)
        return body_revision(updated) if updated else configuration_digest(instance)

    def status(self, endpoint: str, revision: str) -> Status:
        marker = self._disabled.get(endpoint)
        if marker is None:
            return "enabled"
        return "disabled" if marker.revision == revision else "lifted"

    def describe(self, endpoint: str, revision: str) -> dict[str, Any]:
        """The endpoint's state as the API shows it (`schemas/endpoints.schema.json`)."""
        marker = self._disabled.get(endpoint)
        if marker is not None and marker.revision == revision:
            return {
                "state": "disabled",
                "cause": marker.cause,
                "disabledAt": rfc3339(marker.at_ms),
                "lastStatus": marker.status,
            }
        since = self._failing.get(endpoint)
        if since is not None:
            return {"state": "failing", "failingSince": rfc3339(since)}
        return {"state": "delivering"}

    def disabled(self, endpoint: str) -> Disabled | None:
        return self._disabled.get(endpoint)

    def failing_since(self, endpoint: str) -> int | None:
        return self._failing.get(endpoint)

    def disable(self, endpoint: str, marker: Disabled) -> Output:
        if endpoint not in self._disabled:
            logger.warning(
                "endpoint disabled (%s, last status %s): notifications stop until the instance changes",
                marker.cause,
                marker.status,
                extra={"instance_id": endpoint},
            )
        self._failing.pop(endpoint, None)
        self._disabled[endpoint] = marker
        self._newest[endpoint] = marker.at_ms
        self._count()
        return self._output(endpoint, marker.to_json())

    def lift(self, endpoint: str, at_ms: int) -> tuple[Output, ...]:
        """Forget the marker of a changed instance: the record to write with the caller's commit."""
        if self._disabled.pop(endpoint, None) is None:
            return ()
        logger.info("instance changed: notifications enabled again", extra={"instance_id": endpoint})
        self._newest[endpoint] = at_ms
        self._count()
        return (self._output(endpoint, orjson.dumps({"liftedAt": at_ms})),)

    def failed(self, endpoint: str, at_ms: int) -> tuple[Output, ...]:
        """Note a failed attempt: the record that starts the endpoint's failing streak, if this one
        does. An attempt that was in flight when the endpoint was disabled starts none: its record
        would replace the marker."""
        if endpoint in self._failing or endpoint in self._disabled:
            return ()
        self._failing[endpoint] = at_ms
        self._newest[endpoint] = at_ms
        self._count()
        return (self._output(endpoint, orjson.dumps({"failingSince": at_ms})),)

    def succeeded(self, endpoint: str, at_ms: int) -> tuple[Output, ...]:
        """Note a delivery: the record that ends the endpoint's failing streak, if it had one."""
        if self._failing.pop(endpoint, None) is None:
            return ()
        self._newest[endpoint] = at_ms
        self._count()
        return (self._output(endpoint, orjson.dumps({"deliveredAt": at_ms})),)

    def _output(self, endpoint: str, value: bytes | None) -> Output:
        return Output(
            topic=self._topic,
            key=endpoint.encode(),
            value=value,
            partition=state_partition(endpoint, self._partitions),
        )

    def _count(self) -> None:
        self._metrics.disabled_instances.set(len(self._disabled))
        self._metrics.failing_endpoints.set(len(self._failing))

    async def apply_record(self, key: str, value: bytes | None) -> None:
        """Take in a record of the topic (the tail calls it for each), a tombstone as None. A record
        older than the endpoint's newest is one whose commit landed late, and is ignored."""
        if value is None:
            self._forget(key)
            return
        try:
            at_ms, state = _read(value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("ignoring a malformed delivery-state record", extra={"instance_id": key})
            return
        if at_ms < self._newest.get(key, at_ms):
            return
        self._forget(key)
        self._newest[key] = at_ms
        if isinstance(state, Disabled):
            self._disabled[key] = state
        elif state is not None:
            self._failing[key] = state
        self._count()

    def _forget(self, key: str) -> None:
        self._disabled.pop(key, None)
        self._failing.pop(key, None)
        self._newest.pop(key, None)
        self._count()


@asynccontextmanager
async def tail_endpoint_states(
    *,
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    metrics: DeliveryMetrics,
    watchdog: Watchdog,
    revisions: RevisionLookup | None = None,
) -> AsyncIterator[EndpointStates]:
    """The endpoints' states, read from the whole topic on entry and kept following it until exit."""
    states = EndpointStates(topic=topic, partitions=partitions, metrics=metrics, revisions=revisions)
    async with CompactedTopicTable(
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        partitions=partitions,
        listener=states.apply_record,
        watchdog=watchdog,
    ):
        yield states
