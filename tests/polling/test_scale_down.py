"""Scale-down versus restart of static members (issue #12): SIGTERM to one of two `event-gateway run`
replicas, `gw-0` and `gw-1`, as Kubernetes stops a pod of the StatefulSet `gw`.

Each replica reads its StatefulSet from a Kubernetes API served on 127.0.0.1 when it stops
(GATEWAY_LEAVE_GROUP_ON_SHUTDOWN=if-scaled-down). Scaled from 2 to 1, `gw-1` leaves both its groups,
and its partitions move to `gw-0` within seconds although the poller session is 30 s. Not scaled
down, or with `never`, it stays a member of both groups while it is away, and when it starts again
it gets the same partitions back, without a rebalance of the poller group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.kafka.topics import TopicAdmin
from tests._kubernetes import KubernetesApi, kubernetes_api, service_account
from tests.conftest import wait_for
from tests.polling._processes import GatewayProcess, gateway_env, running

STATEFULSET = "gw"
PARTITIONS = 4  # state partitions: two per replica
# Far longer than a departure may take: only leaving the group can move the partitions sooner.
POLLER_SESSION_SECONDS = 30.0
# The deliverers' session is aiokafka's default. Retry tiers 0 and 1 s, 2 partitions each: 4 in all.
DELIVERER_SESSION_SECONDS = 10.0
DELIVERY_PARTITIONS = 4
# A member that does not leave loses its partitions a session after its last heartbeat, which came at
# most a heartbeat interval before SIGTERM (pollers: a fifth of the session; deliverers: aiokafka's
# default, 3 s). Sooner than that after SIGTERM, only its leaving can have moved them.
SOONEST_EXPIRY_SECONDS = {
    "pollers": POLLER_SESSION_SECONDS * 4 / 5,
    "deliverer": DELIVERER_SESSION_SECONDS - 3,
}


@dataclass
class _Pair:
    replicas: tuple[GatewayProcess, GatewayProcess]
    admin: TopicAdmin
    api: KubernetesApi
    state_prefix: str

    @property
    def groups(self) -> dict[str, int]:
        """Each group with its partition count."""
        return {
            f"{self.state_prefix}-pollers": PARTITIONS,
            f"{self.state_prefix}-deliverer": DELIVERY_PARTITIONS,
        }

    async def shares(self, group: str) -> list[tuple[tuple[str, int], ...]]:
        """The partitions of each member of a stable group, in member order; [] while it rebalances."""
        described = await self.admin.describe_group(group)
        return [m.partitions for m in described.members] if described.state == "Stable" else []

    async def held_by(self, group: str, members: int) -> bool:
        """`members` members share every partition of the group, each holding some."""
        shares = await self.shares(group)
        return (
            len(shares) == members
            and all(shares)
            and sum(len(share) for share in shares) == self.groups[group]
        )

    async def shared(self) -> bool:
        """Both replicas share every partition of both groups."""
        return all([await self.held_by(group, 2) for group in self.groups])

    async def pollers(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """The poller group's members, by replica name, with their partitions."""
        described = await self.admin.describe_group(f"{self.state_prefix}-pollers")
        return {m.client_id: m.partitions for m in described.members}


@contextlib.asynccontextmanager
async def _pair(
    bootstrap: str, unique: str, logs: Path, *, leave: str, replicas: int = 2
) -> AsyncIterator[_Pair]:
    async with (
        kubernetes_api(KubernetesApi(replicas={STATEFULSET: replicas})) as api,
        TopicAdmin(bootstrap_servers=bootstrap, replication_factor=1) as admin,
    ):
        env = gateway_env(
            bootstrap,
            f"scaledown-{unique}",
            state_partitions=str(PARTITIONS),
            delivery_topic_partitions=str(DELIVERY_PARTITIONS // 2),
            retry_schedule="0,1",
            poller_session_timeout_seconds=str(POLLER_SESSION_SECONDS),
            leave_group_on_shutdown=leave,
            kubernetes_statefulset=STATEFULSET,
            kubernetes_api_url=api.url,
            kubernetes_service_account_dir=str(service_account(logs / "serviceaccount")),
        )
        pair = _Pair(
            replicas=(
                GatewayProcess.replica(env, f"{STATEFULSET}-0", logs=logs),
                GatewayProcess.replica(env, f"{STATEFULSET}-1", logs=logs),
            ),
            admin=admin,
            api=api,
            state_prefix=env["GATEWAY_STATE_TOPIC_PREFIX"],
        )
        async with running(*pair.replicas):
            await wait_for(pair.shared, within=60)
            yield pair


async def test_a_replica_scaled_away_leaves_its_groups_and_its_partitions_move_within_seconds(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    async with _pair(kafka_bootstrap, unique, tmp_path, leave="if-scaled-down") as pair:
        staying, going = pair.replicas
        pair.api.replicas[STATEFULSET] = 1  # `kubectl scale --replicas=1`, then SIGTERM to gw-1
        started = time.monotonic()
        stopping = asyncio.create_task(going.terminate())
        moved: dict[str, float] = {}

        async def all_moved() -> bool:
            for group in pair.groups:
                if group not in moved and await pair.held_by(group, 1):
                    moved[group] = time.monotonic() - started
            return len(moved) == len(pair.groups)

        await wait_for(all_moved, within=max(SOONEST_EXPIRY_SECONDS.values()))
        status = await stopping
        assert list(await pair.pollers()) == [staying.name]

        async def polled_by_one() -> bool:  # its pollers started on what it took over
            return await staying.metric("gateway_poller_partitions_owned") == PARTITIONS

        await wait_for(polled_by_one, within=20)
        taken_over = time.monotonic() - started
    log = going.log.read_text()
    print(
        "partitions moved after SIGTERM: "
        + ", ".join(f"{group.rsplit('-', 1)[1]} {seconds:.1f} s" for group, seconds in moved.items())
        + f", and gw-0 polled all {PARTITIONS} state partitions {taken_over:.1f} s after it"
        + f" (sessions: pollers {POLLER_SESSION_SECONDS:g} s, deliverers {DELIVERER_SESSION_SECONDS:g} s)"
    )
    assert status == 0
    for group in pair.groups:
        assert f"left group {group} for good" in log
        assert moved[group] < SOONEST_EXPIRY_SECONDS[group.rsplit("-", 1)[1]], moved
    assert len(pair.api.asked) == 1, "asked once, for both groups"


@pytest.mark.parametrize(
    ("leave", "asks"), [("if-scaled-down", 1), ("never", 0)], ids=["not-scaled-down", "never"]
)
async def test_a_restarted_replica_stays_in_its_groups_and_gets_its_partitions_back(
    kafka_bootstrap: str, unique: str, tmp_path: Path, leave: str, asks: int
) -> None:
    async with _pair(kafka_bootstrap, unique, tmp_path, leave=leave) as pair:
        staying, restarting = pair.replicas
        before = await pair.pollers()
        rebalances = await staying.metric("gateway_poller_rebalances_total")
        started = time.monotonic()
        assert await restarting.terminate() == 0
        # Away, it is still a member of both groups, holding its partitions.
        assert await pair.pollers() == before
        assert await pair.shared()
        await restarting.start()
        await wait_for(lambda: restarting.metric("gateway_poller_partitions_owned"), within=30)
        back = time.monotonic() - started
        after = await pair.pollers()
        rebalanced = await staying.metric("gateway_poller_rebalances_total") - rebalances
    print(
        f"{restarting.name} back with its {len(after[restarting.name])} partitions {back:.1f} s after SIGTERM"
    )
    assert back < POLLER_SESSION_SECONDS
    assert after == before
    assert rebalanced == 0, "the restart rebalanced the poller group"
    assert len(pair.api.asked) == asks
    assert "for good" not in restarting.log.read_text()
