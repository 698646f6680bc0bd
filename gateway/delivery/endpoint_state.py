"""Each endpoint's delivery state, kept in the compacted delivery-state topic: failing since when,
or disabled, and why.

An endpoint is an instance's own callback (keyed by the instance id) or one of its subscriptions
(`<instanceId>/<subscriptionId>`). Its record is one of:

- `{"deliveredAt": ms}` or `{"liftedAt": ms}` (or none): healthy;
- `{"failingSince": ms, "failedAt": ms, "revision": ...}`: every attempt since then failed, the last
  one recorded at `failedAt`, at the instance's revision then;
- `{"disabled": true, "cause": "gone" | "outage", "revision": ..., "status": ..., "atMs": ms}`:
  disabled by a 410 Gone, or by failing for `GATEWAY_DELIVERY_DISABLE_AFTER_HOURS` (Svix's rule,
  five days by default), at the instance's revision then. A record without `cause` is a 410's.

Each record carries the time of the attempt that wrote it, and a record older than the state an
endpoint has is ignored: one endpoint's records are written with the commits of different input
partitions, which land in any order, so a delayed record must not undo a newer one.

A failing streak is an outage only while its attempts keep coming. A delivery ends it, and so does
a change of the instance, and a quiet spell: once no attempt failed for `quiet_after` seconds (the
deliverer passes twice the longest a retry may wait), the next failure starts a new streak, so an
endpoint that failed once and then had nothing to do for days is not disabled by its next failure.
To know when the last failure was without a record per attempt, a streak's record is written again
once its `failedAt` is a quarter of `quiet_after` old: a streak is started over after a quiet spell
of more than three quarters of `quiet_after`, and always after one of more than `quiet_after`.

While the instance keeps a marker's revision the endpoint's events are dead-lettered (reason
`endpoint-gone` or `endpoint-disabled`) without a request, so a replay can send them once the
receiver is back. Any change of the instance (a PATCH) gives it a new revision, which lifts the
marker: the next event of the endpoint writes `liftedAt`. The gauges count only the states at their
instance's current revision, so an alert on them clears as soon as the instance changes, or goes.

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
import time
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


@dataclass(frozen=True, slots=True)
class Streak:
    """Every attempt to an endpoint failed since `since_ms`; the last one recorded at `failed_ms`."""

    since_ms: int
    failed_ms: int
    revision: str | None  # None in a record that did not say

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"failingSince": self.since_ms, "failedAt": self.failed_ms, "revision": self.revision}
        )


def _read(value: bytes) -> tuple[int, Disabled | Streak | None]:
    """A record's time and what it says: a marker, a failing streak, or None: healthy."""
    data = orjson.loads(value)
    if data.get("disabled"):
        cause: Cause = "outage" if data.get("cause") == "outage" else "gone"
        status = data.get("status")
        at_ms = int(data["atMs"])
        return at_ms, Disabled(cause, str(data["revision"]), None if status is None else int(status), at_ms)
    if "failingSince" in data:
        since = int(data["failingSince"])
        failed = int(data.get("failedAt", since))
        revision = data.get("revision")
        return failed, Streak(since, failed, None if revision is None else str(revision))
    return int(data.get("deliveredAt", data.get("liftedAt"))), None


def endpoint_key(instance_id: str, subscription_id: str | None) -> str:
    """An endpoint's key in the topic: each subscription fails and is disabled on its own."""
    return instance_id if subscription_id is None else f"{instance_id}/{subscription_id}"


def _instance_of(endpoint: str) -> str:
    # Subscription ids have no '/', so a key's last '/' ends the instance id of a subscription's.
    instance_id, slash, _ = endpoint.rpartition("/")
    return instance_id if slash else endpoint


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
        quiet_after: float,
        revisions: RevisionLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._revisions = revisions
        self._quiet_ms = int(quiet_after * 1000)
        self._clock = clock
        self._disabled: dict[str, Disabled] = {}
        self._failing: dict[str, Streak] = {}
        self._newest: dict[str, int] = {}  # endpoint -> time of the newest record it has
        metrics.disabled_instances.set_function(self._count_disabled)
        metrics.failing_endpoints.set_function(self._count_failing)

    def revision(self, instance: Instance) -> str:
        updated = None if self._revisions is None else self._revisions(instance.id)
        return body_revision(updated) if updated else configuration_digest(instance)

    def disabled_at(self, endpoint: str, revision: str) -> Disabled | None:
        """The endpoint's marker if it disables the endpoint at the instance's `revision`."""
        marker = self._disabled.get(endpoint)
        return marker if marker is not None and marker.revision == revision else None

    def describe(self, endpoint: str, revision: str) -> dict[str, Any]:
        """The endpoint's state as the API shows it (`schemas/endpoints.schema.json`)."""
        marker = self.disabled_at(endpoint, revision)
        if marker is not None:
            return {
                "state": "disabled",
                "cause": marker.cause,
                "disabledAt": rfc3339(marker.at_ms),
                "lastStatus": marker.status,
            }
        streak = self._failing.get(endpoint)
        if streak is not None and streak.revision == revision and not self._quiet(streak):
            return {"state": "failing", "failingSince": rfc3339(streak.since_ms)}
        return {"state": "delivering"}

    def disabled(self, endpoint: str) -> Disabled | None:
        return self._disabled.get(endpoint)

    def streak(self, endpoint: str) -> Streak | None:
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
        return self._output(endpoint, marker.to_json())

    def lift(self, endpoint: str, revision: str, at_ms: int) -> tuple[Output, ...]:
        """Forget a marker that the instance has changed since (it has another `revision`): the
        record to write with the caller's commit."""
        marker = self._disabled.get(endpoint)
        if marker is None or marker.revision == revision:
            return ()
        del self._disabled[endpoint]
        logger.info("instance changed: notifications enabled again", extra={"instance_id": endpoint})
        self._newest[endpoint] = at_ms
        return (self._output(endpoint, orjson.dumps({"liftedAt": at_ms})),)

    def failed(self, endpoint: str, at_ms: int, revision: str) -> tuple[Output, ...]:
        """Note a failed attempt: the record that starts the endpoint's failing streak, or keeps its
        last failure recent enough, if this attempt does either. An attempt that was in flight when
        the endpoint was disabled writes none: its record would replace the marker."""
        if endpoint in self._disabled:
            return ()
        streak = self._failing.get(endpoint)
        if streak is None or streak.revision != revision or at_ms - streak.failed_ms > self._quiet_ms:
            streak = Streak(at_ms, at_ms, revision)
        elif at_ms - streak.failed_ms > self._quiet_ms // 4:
            streak = Streak(streak.since_ms, at_ms, revision)
        else:
            return ()
        self._failing[endpoint] = streak
        self._newest[endpoint] = at_ms
        return (self._output(endpoint, streak.to_json()),)

    def succeeded(self, endpoint: str, at_ms: int) -> tuple[Output, ...]:
        """Note a delivery: the record that ends the endpoint's failing streak, if it had one."""
        if self._failing.pop(endpoint, None) is None:
            return ()
        self._newest[endpoint] = at_ms
        return (self._output(endpoint, orjson.dumps({"deliveredAt": at_ms})),)

    def _output(self, endpoint: str, value: bytes | None) -> Output:
        return Output(
            topic=self._topic,
            key=endpoint.encode(),
            value=value,
            partition=state_partition(endpoint, self._partitions),
        )

    def _quiet(self, streak: Streak) -> bool:
        return self._clock() * 1000 - streak.failed_ms > self._quiet_ms

    def _current(self, endpoint: str, revision: str | None) -> bool:
        """Whether a state written at `revision` is at its instance's current one: not after a
        change or the deletion of the instance. Without a lookup every state counts."""
        if self._revisions is None:
            return True
        updated = self._revisions(_instance_of(endpoint))
        return updated is not None and body_revision(updated) == revision

    def _count_disabled(self) -> float:
        return sum(self._current(e, m.revision) for e, m in list(self._disabled.items()))

    def _count_failing(self) -> float:
        return sum(
            self._current(e, s.revision) and not self._quiet(s) for e, s in list(self._failing.items())
        )

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

    def _forget(self, key: str) -> None:
        self._disabled.pop(key, None)
        self._failing.pop(key, None)
        self._newest.pop(key, None)


@asynccontextmanager
async def tail_endpoint_states(
    *,
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    metrics: DeliveryMetrics,
    watchdog: Watchdog,
    quiet_after: float,
    revisions: RevisionLookup | None = None,
) -> AsyncIterator[EndpointStates]:
    """The endpoints' states, read from the whole topic on entry and kept following it until exit."""
    states = EndpointStates(
        topic=topic, partitions=partitions, metrics=metrics, quiet_after=quiet_after, revisions=revisions
    )
    async with CompactedTopicTable(
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        partitions=partitions,
        listener=states.apply_record,
        watchdog=watchdog,
    ):
        yield states
