"""Scale-out: poller replicas share the instances through a consumer group, and a replica that dies,
pauses past its session or is scaled away loses nothing and duplicates nothing.

Each replica is a real `event-gateway run` process with a static identity (`poller-<n>`, as the Helm
chart's StatefulSet gives them); `poller-0` also serves the admin API. Each instance logs in to the
simulator as its own user, and each replica names itself in its User-Agent, so the simulator's request
log shows which replica polled which instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.kafka.compacted import read_table
from gateway.kafka.partitioning import state_partition
from gateway.kafka.topics import TopicAdmin
from gateway.sim import RequestRecord, Simulator
from gateway.sources.dynamics.client import user_agent
from tests.conftest import wait_for
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

PARTITIONS = 6  # three replicas hold two each
TOPIC_PARTITIONS = 3
# What a takeover may add to the session timeout: the survivors' next heartbeat, the rebalance, and
# starting the new owner's producers and reading its checkpoints.
TAKEOVER_MARGIN_SECONDS = 10.0


@dataclass
class _Group:
    """Three replicas polling instances that each log in to the simulator as their own user."""

    sim: Simulator
    env: dict[str, str]
    replicas: tuple[GatewayProcess, ...]
    changes: LiveChanges  # on rows loaded before the instances' baselines, so none of them is a change
    users: dict[str, str]  # instance id -> its user, the principal of its requests in the simulator's log

    @property
    def api(self) -> GatewayProcess:
        return self.replicas[0]

    @property
    def topic(self) -> str:
        return f"{self.env['GATEWAY_TOPIC_PREFIX']}.crm.accounts"

    def replica_of(self, record: RequestRecord) -> str:
        """The replica that sent a request, from its User-Agent."""
        by_agent = {user_agent(r.name): r.name for r in self.replicas}
        return by_agent.get(record.user_agent or "", f"unknown: {record.user_agent}")

    def polls_since(self, since: datetime) -> dict[str, list[RequestRecord]]:
        """Per instance, its answered account requests since `since` (each page of each poll)."""
        instance_of = {user: instance_id for instance_id, user in self.users.items()}
        found: dict[str, list[RequestRecord]] = defaultdict(list)
        for record in list(self.sim.requests):
            if record.path == ACCOUNTS_URL and record.status == 200 and record.time >= since:
                found[instance_of[record.principal or ""]].append(record)
        return found

    def pollers_since(self, since: datetime) -> dict[str, set[str]]:
        """Per instance, the replicas that polled it since `since`."""
        return {
            instance_id: {self.replica_of(r) for r in records}
            for instance_id, records in self.polls_since(since).items()
        }

    def polled_again(
        self, since: datetime, *, times: int, by: set[str] | None = None, instances: set[str] | None = None
    ) -> bool:
        """Whether every instance (of `instances`) started `times` polls since `since` (by one of `by`).
        A poll's first request has no $skiptoken; the poll before it has ended."""
        polls = self.polls_since(since)
        return all(
            sum(
                1
                for r in polls[i]
                if "$skiptoken" not in r.query and (by is None or self.replica_of(r) in by)
            )
            >= times
            for i in (self.users if instances is None else instances)
        )

    async def busiest_poller(self) -> tuple[GatewayProcess, set[str]]:
        """The replica without the API that polls the most instances, and those instances."""
        polling = {r["replica"]: set(r["instances"]) for r in (await self.api.cluster())["replicas"]}
        replica = max(self.replicas[1:], key=lambda r: len(polling.get(r.name, ())))
        assert polling.get(replica.name), f"no replica but the API's polls anything: {polling}"
        return replica, polling[replica.name]

    def mid_poll(self, replica: GatewayProcess) -> bool:
        """Whether the replica's last request asked for a page after the first of a poll: it has
        published the first page into a transaction that is still open."""
        mine = [r for r in list(self.sim.requests) if self.replica_of(r) == replica.name]
        return bool(mine) and mine[-1].path == ACCOUNTS_URL and "$skiptoken" in mine[-1].query

    def others(self, replica: GatewayProcess) -> list[GatewayProcess]:
        return [r for r in self.replicas if r is not replica]

    async def settled(self, *members: GatewayProcess) -> bool:
        """The group is stable, `members` are its members and own every partition, and every instance
        has its pollers running."""
        view = await self.api.cluster()
        if view["state"] != "Stable" or {r["replica"] for r in view["replicas"]} != {m.name for m in members}:
            return False
        owned = [await m.metric("gateway_poller_partitions_owned") for m in members]
        running_pollers = [await m.metric("gateway_pollers_running") for m in members]
        return sum(owned) == PARTITIONS and all(owned) and sum(running_pollers) == len(self.users)

    async def baselines_committed(self) -> bool:
        """Every instance has committed a change-tracking cursor: from now on it sees every change."""
        table = await read_table(
            self.env["GATEWAY_KAFKA_BOOTSTRAP_SERVERS"],
            f"{self.env['GATEWAY_STATE_TOPIC_PREFIX']}.checkpoints",
            range(PARTITIONS),
        )
        cursors = {key: orjson.loads(value)["cursor"] for key, value in table.items()}
        return all(cursors.get(f"{i}:accounts") is not None for i in self.users)

    async def check_each_change_once(self, tail: EventTail) -> None:
        """Wait until every instance published every change, then a little more so that duplicates
        would show, and check that a read_committed consumer sees each change exactly once."""
        changes = self.changes
        expected = changes.count
        await wait_for(lambda: all(tail.by_instance[i] >= expected for i in self.users), within=40)
        complete = self.sim.clock()
        await wait_for(lambda: self.polled_again(complete, times=2), within=20)
        bootstrap = self.env["GATEWAY_KAFKA_BOOTSTRAP_SERVERS"]
        events = await read_committed_to_end(bootstrap, self.topic, TOPIC_PARTITIONS, within=30)
        by_instance: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            by_instance[event["source"].removeprefix("/instances/")].append(event)
        assert set(by_instance) == set(self.users)
        wrong = {i: found for i in self.users if (found := changes.discrepancies(by_instance[i]))}
        assert wrong == {}, f"{len(wrong)} of {len(self.users)} instances: {wrong}"


@contextlib.asynccontextmanager
async def _group(
    bootstrap: str, unique: str, logs: Path, *, instances: int, page_size: int, seed: int, started: int = 3
) -> AsyncIterator[_Group]:
    """Three replicas (`poller-0` with the admin API), the first `started` of them running and settled,
    polling `instances` instances, with every instance's change-tracking baseline committed. The
    others are the test's to start; all are killed at the end."""
    users = {f"user-{n}@contoso.example": f"password-{n}" for n in range(instances)}
    async with Simulator(users=users, seed=seed, request_log_size=100_000) as sim:
        changes = LiveChanges.on_existing(sim, 1000)
        env = gateway_env(
            bootstrap,
            f"scale-{unique}",
            state_partitions=str(PARTITIONS),
            topic_partitions=str(TOPIC_PARTITIONS),
        )
        replicas = (
            GatewayProcess.replica(env, "poller-0", logs=logs, role="all"),
            GatewayProcess.replica(env, "poller-1", logs=logs, role="poller"),
            GatewayProcess.replica(env, "poller-2", logs=logs, role="poller"),
        )
        async with contextlib.AsyncExitStack() as stack:
            for later in replicas[started:]:
                stack.push_async_callback(later.kill)
            await stack.enter_async_context(running(*replicas[:started]))
            group = _Group(sim, env, replicas, changes, {})
            for user, password in users.items():
                body = accounts_instance(sim, user=user, password=password, page_size=page_size, name=user)
                group.users[await group.api.create_instance(body)] = user
            await wait_for(lambda: group.settled(*replicas[:started]), within=40)
            await wait_for(group.baselines_committed, within=20)
            # The event topic, as the first poll that publishes would create it: a read_committed
            # tail assigned a topic that does not exist yet waits out its request timeout (40 s) first.
            async with TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin:
                await admin.ensure(group.topic, partitions=TOPIC_PARTITIONS)
            yield group


async def test_three_replicas_each_poll_their_own_share_of_30_instances(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    async with _group(kafka_bootstrap, unique, tmp_path, instances=30, page_size=50, seed=51) as group:
        view = await group.api.cluster()
        rebalances = [await r.metric("gateway_poller_rebalances_total") for r in group.replicas]
        since = group.sim.clock()
        await wait_for(lambda: group.polled_again(since, times=3), within=20)
        pollers = group.pollers_since(since)
        assert view == await group.api.cluster()  # no rebalance during the window
        assert rebalances == [await r.metric("gateway_poller_rebalances_total") for r in group.replicas]

    # Every instance was polled by exactly one replica, and every replica had a share of them.
    assert {i: p for i, p in pollers.items() if len(p) != 1} == {}
    polled_by = {i: next(iter(p)) for i, p in pollers.items()}
    assert set(polled_by) == set(group.users)
    assert set(polled_by.values()) == {r.name for r in group.replicas}
    # /cluster agrees with the request log.
    assert view["unownedPartitions"] == []
    assert view["unpolledInstances"] == []
    for replica in view["replicas"]:
        assert len(replica["partitions"]) == PARTITIONS // len(group.replicas)
        assert set(replica["instances"]) == {i for i, r in polled_by.items() if r == replica["replica"]}


async def test_a_killed_replicas_instances_move_within_the_session_timeout_and_nothing_is_lost(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a poll that has written into its transaction; the new owners' producers
    abort it, and they go on from the last committed checkpoints while the source keeps changing."""
    async with _group(kafka_bootstrap, unique, tmp_path, instances=12, page_size=10, seed=53) as group:
        changes = group.changes
        async with EventTail(kafka_bootstrap, group.topic, TOPIC_PARTITIONS) as tail:
            # 30 changes a second and 10 per page: a poll has several pages, 50 ms each, and after its
            # first page a transaction is open until the commit.
            group.sim.faults.latency_ms = 50
            async with changes.flowing(per_tick=1, limit=900, tick=0.1):
                await wait_for(lambda: sum(tail.by_instance.values()) > 0, within=20)
                victim, moved = await group.busiest_poller()
                await wait_for(lambda: group.mid_poll(victim), within=20)
                await victim.kill()
                killed_at, started, made_before = group.sim.clock(), time.monotonic(), changes.count
                survivors = {r.name for r in group.others(victim)}

                def taken_over() -> bool:
                    pollers = group.pollers_since(killed_at)
                    return all(pollers.get(i, set()) & survivors for i in moved)

                await wait_for(taken_over, within=SESSION_TIMEOUT_SECONDS + TAKEOVER_MARGIN_SECONDS)
                takeover = time.monotonic() - started
                made_meanwhile = changes.count - made_before
                await wait_for(lambda: group.settled(*group.others(victim)), within=20)
            await group.check_each_change_once(tail)
    print(f"{len(moved)} instances of the killed replica polled again after {takeover:.1f} s")
    assert takeover <= SESSION_TIMEOUT_SECONDS + TAKEOVER_MARGIN_SECONDS
    assert made_meanwhile > 0, "the source did not change while the instances moved"


async def test_a_paused_replica_is_fenced_and_its_late_writes_never_show(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """SIGSTOP in the middle of a poll that has written into its transaction (a page was published and
    the next one asked for); the others take its partitions over; SIGCONT. Its transaction was
    aborted when the new owner's producer started, its commit fails as fenced, and it polls no more
    until the group gives it partitions again."""
    async with _group(kafka_bootstrap, unique, tmp_path, instances=12, page_size=10, seed=57) as group:
        changes = group.changes
        async with EventTail(kafka_bootstrap, group.topic, TOPIC_PARTITIONS) as tail:
            # 30 changes a second and 10 per page: a poll has several pages, 50 ms each, and after its
            # first page a transaction is open until the commit.
            group.sim.faults.latency_ms = 50
            async with changes.flowing(per_tick=1, limit=900, tick=0.1):
                await wait_for(lambda: sum(tail.by_instance.values()) > 0, within=20)
                zombie, moved = await group.busiest_poller()
                aborted = await zombie.metric("gateway_kafka_transactions_total", outcome="aborted")
                # A rebalance after the group first settled may have failed a poll or two before the
                # pause (a full run here saw 3); what the zombie must not cause is a failure after it.
                failed_before = [await r.polls("failed") for r in group.others(zombie)]
                await wait_for(lambda: group.mid_poll(zombie), within=20)
                zombie.pause()
                paused_at = group.sim.clock()
                survivors = {r.name for r in group.others(zombie)}
                await wait_for(
                    lambda: group.settled(*group.others(zombie)),
                    within=SESSION_TIMEOUT_SECONDS + TAKEOVER_MARGIN_SECONDS,
                )
                # The new owners commit polls of the zombie's instances, past where its transaction was.
                await wait_for(
                    lambda: group.polled_again(paused_at, times=2, by=survivors, instances=moved), within=20
                )
                zombie.resume()
                await wait_for(lambda: group.settled(*group.replicas), within=30)
                aborted_after = await zombie.metric("gateway_kafka_transactions_total", outcome="aborted")
                failed_after = await zombie.polls("failed")
            await group.check_each_change_once(tail)
            # The zombie never fenced the new owners back: none of their polls failed.
            assert [await r.polls("failed") for r in group.others(zombie)] == failed_before
    print(
        f"zombie after SIGCONT: {aborted_after - aborted:g} transactions aborted, "
        f"{failed_after:g} polls failed"
    )
    assert aborted_after > aborted, "the transaction open at SIGSTOP was not aborted"


async def test_scaling_down_from_three_replicas_to_one_keeps_every_instance_polled(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """SIGTERM, as Kubernetes scales a StatefulSet down: the two replicas stop their pollers and exit 0.
    With static membership they do not leave the group, so their partitions move when their sessions
    expire; the last replica then polls every instance, and no change is lost or duplicated."""
    async with _group(kafka_bootstrap, unique, tmp_path, instances=12, page_size=50, seed=59) as group:
        last = group.replicas[0]
        changes = group.changes
        async with EventTail(kafka_bootstrap, group.topic, TOPIC_PARTITIONS) as tail:
            async with changes.flowing(per_tick=1, limit=900):
                await wait_for(lambda: sum(tail.by_instance.values()) > 0, within=20)
                started = time.monotonic()
                statuses = await asyncio.gather(*(r.terminate() for r in group.replicas[1:]))
                assert statuses == [0, 0]
                stopped_at = group.sim.clock()
                await wait_for(
                    lambda: group.settled(last), within=SESSION_TIMEOUT_SECONDS + TAKEOVER_MARGIN_SECONDS
                )
                print(f"one replica owns every partition {time.monotonic() - started:.1f} s after SIGTERM")
                await wait_for(lambda: group.polled_again(stopped_at, times=2, by={last.name}), within=20)
                view = await last.cluster()
                owned = await last.metric("gateway_poller_partitions_owned")
            await group.check_each_change_once(tail)
    assert owned == PARTITIONS
    assert [r["replica"] for r in view["replicas"]] == [last.name]
    assert view["replicas"][0]["partitions"] == list(range(PARTITIONS))
    assert sorted(view["replicas"][0]["instances"]) == sorted(group.users)


def _pollers_started_and_stopped(replica: GatewayProcess, *, after_line: int) -> Counter[tuple[str, str]]:
    """(message, instance id) of the `polling started` and `polling stopped` lines of the replica's
    log after its line `after_line`."""
    found: Counter[tuple[str, str]] = Counter()
    for line in replica.log.read_text(errors="replace").splitlines()[after_line:]:
        if not line.startswith("{"):
            continue
        entry = orjson.loads(line)
        if entry["message"] in ("polling started", "polling stopped"):
            found[(entry["message"], entry["instance_id"])] += 1
    return found


def _lines(replica: GatewayProcess) -> int:
    return len(replica.log.read_text(errors="replace").splitlines())


async def test_a_third_replica_joins_and_the_pollers_of_the_partitions_that_stay_put_keep_running(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """aiokafka's group protocol is eager: each rebalance revokes every partition of every member. A
    replica keeps polling through it, and of what the new assignment gives it, stops only the
    partitions that moved away and starts only the new ones. The source keeps changing throughout,
    and a read_committed consumer then sees each change exactly once."""
    async with _group(
        kafka_bootstrap, unique, tmp_path, instances=12, page_size=10, seed=67, started=2
    ) as group:
        staying, joining = group.replicas[:2], group.replicas[2]
        changes = group.changes
        async with EventTail(kafka_bootstrap, group.topic, TOPIC_PARTITIONS) as tail:
            group.sim.faults.latency_ms = 20  # polls of several pages: some are mid-poll at the join
            async with changes.flowing(per_tick=1, limit=900, tick=0.1):
                await wait_for(lambda: sum(tail.by_instance.values()) > 0, within=20)
                before = await _ownership(group)
                lines = {r.name: _lines(r) for r in staying}
                rebalances = sum([await r.metric("gateway_poller_rebalances_total") for r in staying])
                started = time.monotonic()
                await joining.start()
                await wait_for(lambda: group.settled(*group.replicas), within=40)
                took = time.monotonic() - started
                after = await _ownership(group)
                restarts = {
                    r.name: _pollers_started_and_stopped(r, after_line=lines[r.name]) for r in staying
                }
                rebalanced = sum([await r.metric("gateway_poller_rebalances_total") for r in staying])
                failed = [await r.polls("failed") for r in group.replicas]
            await group.check_each_change_once(tail)

    owner_before = {p: name for name, parts in before.items() for p in parts}
    owner_after = {p: name for name, parts in after.items() for p in parts}
    stayed = {p for p in owner_before if owner_after.get(p) == owner_before[p]}
    moved = {p: (owner_before[p], owner_after[p]) for p in owner_before if p not in stayed}
    kept = {i for i in group.users if state_partition(i, PARTITIONS) in stayed}
    print(
        f"third replica settled in {took:.1f} s; {len(stayed)} of {PARTITIONS} partitions stayed put "
        f"({len(kept)} instances), moved (from, to): {dict(sorted(moved.items()))}; "
        f"polls failed per replica: {failed}"
    )
    assert rebalanced > rebalances, "the join caused no rebalance"
    assert stayed, f"no partition stayed with its owner: {before} -> {after}"
    # The pollers of the partitions that stayed put were neither stopped nor started again.
    restarted = {
        (name, message, instance): count
        for name, found in restarts.items()
        for (message, instance), count in found.items()
        if instance in kept
    }
    assert restarted == {}, f"pollers restarted by the rebalance: {restarted}"
    # Those of the partitions that moved stopped on their old owner, once.
    for p, (old, _new) in moved.items():
        for i in (i for i in group.users if state_partition(i, PARTITIONS) == p):
            assert restarts[old][("polling stopped", i)] == 1, (p, old, i, restarts[old])


async def _ownership(group: _Group) -> dict[str, list[int]]:
    """The state partitions of each replica, as the group coordinator has them."""
    return {r["replica"]: r["partitions"] for r in (await group.api.cluster())["replicas"]}
