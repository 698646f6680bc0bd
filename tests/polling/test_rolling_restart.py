"""Rolling restart (issue #5): three replicas of role `all`, each restarted in turn with SIGTERM while
the source keeps changing, as `kubectl rollout restart` does to the Helm chart's StatefulSet.

Each replica keeps its static identity (`gateway-<n>`, GATEWAY_GROUP_INSTANCE_ID) across its restart,
as a StatefulSet pod keeps its name. Each gets SIGTERM in the middle of a poll with webhooks in
flight. Two come back within their sessions, and static membership hands them their partitions back;
one stays away until both groups have given its work to the others, as a rescheduled pod would.
Afterwards a read_committed consumer sees every change exactly once, the receiver got every event at
least once, every copy of a webhook carries the same `webhook-id` and a valid signature, and nothing
was dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from gateway.kafka.compacted import read_table
from gateway.kafka.topics import TopicAdmin
from gateway.sim import Simulator
from gateway.sources.dynamics.client import user_agent
from tests.conftest import wait_for
from tests.delivery._support import KEY, Hit, Receiver, receiving
from tests.polling._processes import (
    ACCOUNTS_URL,
    SESSION_TIMEOUT_SECONDS,
    EventTail,
    GatewayProcess,
    LiveChanges,
    accounts_instance,
    gateway_env,
    read_committed_to_end,
    running,
)

INSTANCES = 12
PAGE_SIZE = 10  # with the source's latency, a poll of a second's changes spans several requests
SOURCE_LATENCY_MS = 20
RECEIVER_LATENCY_SECONDS = 0.05  # so that a SIGTERM finds webhooks in flight
PARTITIONS = 6  # state partitions: two per replica
TOPIC_PARTITIONS = 3  # event topic: one per replica's deliverer
DELIVERY_PARTITIONS = 3  # retry tiers and dead letters
# A restart: the SIGTERM'd process stops, a new one starts (a few seconds for Python and its clients
# on a busy machine), rejoins both groups and takes its partitions back; if that outlasts a session,
# the group moves its partitions away and back, which takes a rebalance or two more.
RESTART_SECONDS = 45.0


def _cluster_env(bootstrap: str, unique: str) -> dict[str, str]:
    return gateway_env(
        bootstrap,
        f"rolling-{unique}",
        state_partitions=str(PARTITIONS),
        topic_partitions=str(TOPIC_PARTITIONS),
        delivery_topic_partitions=str(DELIVERY_PARTITIONS),
        callback_allowed_networks="127.0.0.0/8",
        # Short retries: a webhook that failed is retried, or dead-lettered, within the test.
        retry_schedule="0,0.2,0.5",
        delivery_inline_retry_max_seconds="0.1",
        # Also the drain of a shutdown: what is still in flight 2 s after SIGTERM is cancelled, and
        # repeated by the partition's next owner.
        delivery_timeout_seconds="2",
        shutdown_timeout_seconds="20",
    )


@dataclass
class _Restart:
    replica: str
    outlasted_sessions: bool  # started again only once both groups had moved on without it
    status: int
    stop_seconds: float  # SIGTERM to exit
    back_seconds: float  # SIGTERM to the cluster settled again, with the new process in it
    changes_meanwhile: int
    same_partitions: bool  # it polls the state partitions it polled before
    drained: int  # webhooks in flight that its shutdown waited for, as its log says


@dataclass
class _Cluster:
    """Three replicas of role `all`: each polls, delivers and serves the admin API."""

    sim: Simulator
    env: dict[str, str]
    replicas: tuple[GatewayProcess, ...]
    changes: LiveChanges
    receiver: Receiver
    admin: TopicAdmin
    users: dict[str, str] = field(default_factory=dict)  # instance id -> its user in the simulator

    @property
    def bootstrap(self) -> str:
        return self.env["GATEWAY_KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def state_prefix(self) -> str:
        return self.env["GATEWAY_STATE_TOPIC_PREFIX"]

    @property
    def topic(self) -> str:
        return f"{self.env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"

    def api(self) -> GatewayProcess:
        """Any running replica: each serves the API, and one of them may be restarting."""
        return next(r for r in self.replicas if r.running)

    def others(self, replica: GatewayProcess) -> tuple[GatewayProcess, ...]:
        return tuple(r for r in self.replicas if r is not replica)

    async def create_instances(self, users: dict[str, str]) -> None:
        for user, password in users.items():
            body = accounts_instance(self.sim, user=user, password=password, page_size=PAGE_SIZE, name=user)
            body["configuration"]["event.notification.callback.url"] = self.receiver.url
            body["configuration"]["event.notification.signature.key"] = KEY
            self.users[await self.api().create_instance(body)] = user

    async def settled(self, *members: GatewayProcess) -> bool:
        """`members` run and are the only members of both groups, both stable: they own every state
        partition, each some, with a poller for every instance; each of their deliverers reads the
        event topic, whose partitions all have an owner."""
        if not all(m.running for m in members):
            return False
        return await self._pollers_settled(members) and await self._deliverers_settled(members)

    async def _pollers_settled(self, members: tuple[GatewayProcess, ...]) -> bool:
        view = await self.api().cluster()
        if view["state"] != "Stable" or {r["replica"] for r in view["replicas"]} != {m.name for m in members}:
            return False
        owned = [await m.metric("gateway_poller_partitions_owned") for m in members]
        pollers = [await m.metric("gateway_pollers_running") for m in members]
        return sum(owned) == PARTITIONS and all(owned) and sum(pollers) == len(self.users)

    async def _deliverers_settled(self, members: tuple[GatewayProcess, ...]) -> bool:
        # Deliverers name themselves randomly in the group: count them, and ask each process.
        group = await self.admin.describe_group(f"{self.state_prefix}-deliverer")
        assigned = {p for m in group.members for topic, p in m.partitions if topic == self.topic}
        if group.state != "Stable" or len(group.members) != len(members) or len(assigned) != TOPIC_PARTITIONS:
            return False
        return all([await self._delivers(m) for m in members])

    async def _delivers(self, replica: GatewayProcess) -> bool:
        """Whether the replica's deliverer has fetched from a partition of the event topic: only a
        fetched partition has a lag sample."""
        group = f"{self.state_prefix}-deliverer"
        async with aiohttp.ClientSession() as http, http.get(f"{replica.metrics_url}/metrics") as response:
            text = await response.text()
        return any(
            sample.labels.get("group") == group and sample.labels.get("topic") == self.topic
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "gateway_kafka_consumer_lag"
        )

    async def unready(self) -> dict[str, list[str]]:
        """Per replica, the readiness conditions that fail: none while it polls and delivers."""
        found: dict[str, list[str]] = {}
        for replica in self.replicas:
            async with aiohttp.ClientSession() as http, http.get(f"{replica.metrics_url}/readyz") as response:
                conditions: dict[str, bool] = (await response.json())["conditions"]
            if failing := sorted(name for name, ok in conditions.items() if not ok):
                found[replica.name] = failing
        return found

    async def partitions_of(self, replica: GatewayProcess) -> list[int]:
        view = await self.api().cluster()
        return next((r["partitions"] for r in view["replicas"] if r["replica"] == replica.name), [])

    def mid_poll(self, replica: GatewayProcess) -> bool:
        """Whether the replica's last request to the source asked for a page after the first of a
        poll: it has published the first page into a transaction that is still open."""
        agent = user_agent(replica.name)
        recent = itertools.islice(reversed(self.sim.requests), 500)
        last = next((r for r in recent if r.user_agent == agent), None)
        return last is not None and last.path == ACCOUNTS_URL and "$skiptoken" in last.query

    async def busy(self, replica: GatewayProcess) -> bool:
        """Mid-poll with webhooks in flight: the moment a shutdown has the most to lose."""
        return self.mid_poll(replica) and await replica.metric("gateway_delivery_in_flight") > 0

    async def restart(self, replica: GatewayProcess, *, outlast_sessions: bool) -> _Restart:
        """SIGTERM while the replica is busy, wait for the exit, start the same replica again and wait
        until it is back in both groups. A pod that is rescheduled is away for longer than a session:
        with `outlast_sessions` it starts again only once the others have taken all its work over."""
        partitions = await self.partitions_of(replica)
        await wait_for(lambda: self.busy(replica), within=20)
        made_before, started = self.changes.count, time.monotonic()
        status = await replica.terminate(within=30)
        stopped = time.monotonic()
        drained = _drained(replica.tail(200))
        if outlast_sessions:
            await wait_for(lambda: self.settled(*self.others(replica)), within=RESTART_SECONDS)
        await replica.start()
        await wait_for(lambda: self.settled(*self.replicas), within=RESTART_SECONDS)
        return _Restart(
            replica=replica.name,
            outlasted_sessions=outlast_sessions,
            status=status,
            stop_seconds=stopped - started,
            back_seconds=time.monotonic() - started,
            changes_meanwhile=self.changes.count - made_before,
            same_partitions=await self.partitions_of(replica) == partitions,
            drained=drained,
        )

    def polled_again(self, since: datetime, *, times: int) -> bool:
        """Whether every instance started `times` polls since `since`. A poll's first request has no
        $skiptoken; the poll before it has ended."""
        instance_of = {user: instance_id for instance_id, user in self.users.items()}
        started: Counter[str] = Counter(
            instance_of[r.principal or ""]
            for r in list(self.sim.requests)
            if r.path == ACCOUNTS_URL and r.status == 200 and r.time >= since and "$skiptoken" not in r.query
        )
        return all(started[i] >= times for i in self.users)

    async def baselines_committed(self) -> bool:
        """Every instance has committed a change-tracking cursor: from now on it sees every change."""
        table = await read_table(self.bootstrap, f"{self.state_prefix}.checkpoints", range(PARTITIONS))
        return all(f"{i}:accounts" in table for i in self.users)

    async def published(self, tail: EventTail) -> list[dict[str, Any]]:
        """Wait until every instance published every change made, then for two more polls of each, so
        that a change published twice would show; the events a read_committed consumer sees."""
        expected = self.changes.count
        await wait_for(lambda: all(tail.by_instance[i] >= expected for i in self.users), within=40)
        complete = self.sim.clock()
        await wait_for(lambda: self.polled_again(complete, times=2), within=20)
        return await read_committed_to_end(self.bootstrap, self.topic, TOPIC_PARTITIONS, within=30)

    async def dead_letters(self) -> dict[str, bytes]:
        return await read_table(
            self.bootstrap, f"{self.state_prefix}.dead-letters", range(DELIVERY_PARTITIONS)
        )


async def _slow_ok(_attempt: int, _request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(RECEIVER_LATENCY_SECONDS)  # a receiver's own work, not a synchronisation
    return web.Response(status=200)


@contextlib.asynccontextmanager
async def _cluster(bootstrap: str, unique: str, logs: Path) -> AsyncIterator[_Cluster]:
    """Three settled replicas polling INSTANCES instances, every baseline committed, webhooks to a
    receiver that accepts everything."""
    users = {f"user-{n}@contoso.example": f"password-{n}" for n in range(INSTANCES)}
    env = _cluster_env(bootstrap, unique)
    replicas = tuple(GatewayProcess.replica(env, f"gateway-{n}", logs=logs) for n in range(3))
    async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
        # The event topic, as the first poll that publishes would create it: a read_committed tail
        # assigned a topic that does not exist yet waits out its request timeout (40 s) first.
        await admin.ensure(f"{env['GATEWAY_TOPIC_PREFIX']}.crm.accounts", partitions=TOPIC_PARTITIONS)
        async with (
            receiving(_slow_ok) as receiver,
            Simulator(users=users, seed=61, request_log_size=200_000) as sim,
            running(*replicas),
        ):
            # Rows loaded before the baselines: changes to them are changes, the rows themselves are not.
            changes = LiveChanges.on_existing(sim, 2000)
            cluster = _Cluster(sim, env, replicas, changes, receiver, admin)
            await cluster.create_instances(users)
            await wait_for(cluster.baselines_committed, within=30)
            await wait_for(lambda: cluster.settled(*replicas), within=RESTART_SECONDS)
            sim.faults.latency_ms = SOURCE_LATENCY_MS
            yield cluster


_DRAINING = re.compile(r"waiting up to \S+ s for (\d+) deliveries in flight")


def _drained(log: str) -> int:
    """The deliveries in flight that the last shutdown in a replica's log waited for."""
    for line in reversed(log.splitlines()):
        if found := _DRAINING.search(line):
            return int(found.group(1))
        if "shutting down" in line:
            break
    return 0


def _change_of(hit: Hit) -> tuple[str, ...]:
    """What a webhook is about: instance, object, event type and, but for a delete (whose date is when
    it was seen, not when it happened), the change's date."""
    message = hit.json()["message"]
    (item,) = message["events"]
    date = "" if item["eventType"] == "DELETED" else item["date"]
    return (message["instanceId"], item["objectId"], item["eventType"], date)


def _webhook_ids_per_change(hits: Iterable[Hit]) -> dict[tuple[str, ...], set[str]]:
    found: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for hit in hits:
        found[_change_of(hit)].add(hit.webhook_id)
    return found


async def test_a_rolling_restart_of_three_replicas_loses_and_duplicates_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    async with _cluster(kafka_bootstrap, unique, tmp_path) as cluster:
        ready = time.monotonic()
        changes, receiver = cluster.changes, cluster.receiver
        restarts: list[_Restart] = []
        async with EventTail(kafka_bootstrap, cluster.topic, TOPIC_PARTITIONS) as tail:
            # 24 changes a second (a create, an update and a delete every 0.125 s), seen by each
            # instance: every restart happens while polls publish and webhooks are in flight.
            async with changes.flowing(per_tick=1, limit=3000, tick=0.125):
                await wait_for(lambda: len(receiver.hits) > 0, within=20)
                # The second one is away long enough for both groups to move its work to the others.
                for n, replica in enumerate(cluster.replicas):
                    # Every replica polls and delivers before the next one goes: a rebalance must
                    # not stop anyone's deliverer.
                    assert await cluster.unready() == {}, restarts
                    restarts.append(await cluster.restart(replica, outlast_sessions=n == 1))
            # The source stops changing here.
            events = await cluster.published(tail)
            event_ids = {e["id"] for e in events}
            await wait_for(lambda: receiver.ids >= event_ids, within=30)
            dead_letters = await cluster.dead_letters()
            unready = await cluster.unready()
    finished = time.monotonic()

    # What happened, shown before the checks so that a failure shows it too.
    duplicates = len(receiver.hits) - len(receiver.ids)
    print(
        f"ready in {ready - began:.1f} s, whole test {finished - began:.1f} s; {changes.count} changes x "
        f"{len(cluster.users)} instances = {len(events)} events, {len(receiver.hits)} webhooks, "
        f"{duplicates} duplicates"
    )
    for r in restarts:
        kind = "slow" if r.outlasted_sessions else "quick"
        print(
            f"{r.replica} ({kind}): exit {r.status} after {r.stop_seconds:.1f} s, back after "
            f"{r.back_seconds:.1f} s (session {SESSION_TIMEOUT_SECONDS:g} s), {r.changes_meanwhile} changes "
            f"meanwhile, {r.drained} webhooks in flight drained, same partitions: {r.same_partitions}"
        )

    # Kafka: every change of every instance exactly once.
    by_instance: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_instance[event["source"].removeprefix("/instances/")].append(event)
    assert set(by_instance) == set(cluster.users)
    wrong = {i: found for i in cluster.users if (found := changes.discrepancies(by_instance[i]))}
    assert wrong == {}, f"{len(wrong)} of {len(cluster.users)} instances: {wrong}"
    assert len(events) == len(event_ids) == changes.count * len(cluster.users)

    # Webhooks: every event at least once and nothing else; each change under one webhook-id, its
    # event's, every copy signed and the same.
    assert receiver.ids == event_ids
    assert {c: ids for c, ids in _webhook_ids_per_change(receiver.hits).items() if len(ids) != 1} == {}
    bodies: dict[str, bytes] = {}
    for hit in receiver.hits:
        assert hit.json()["message"]["eventId"] == hit.webhook_id
        assert bodies.setdefault(hit.webhook_id, hit.body) == hit.body
        Webhook(KEY.encode()).verify(hit.body, hit.headers)
    assert dead_letters == {}

    # Each replica stopped cleanly (a deliverer that had crashed fails the shutdown), the new processes
    # still poll and deliver, and the source changed while each replica was away.
    assert [r.status for r in restarts] == [0, 0, 0], restarts
    # Static membership: a replica back within its session polls the partitions it polled before.
    assert all(r.same_partitions for r in restarts if not r.outlasted_sessions), restarts
    assert unready == {}
    assert all(r.changes_meanwhile > 0 for r in restarts), restarts
