"""Whether a stopping static member goes for good, asked of a Kubernetes API served on 127.0.0.1: its
StatefulSet scaled below its pod, or gone, means leaving; anything it cannot read means staying. Then
its leaving, against the real broker: a stopped static member that goes is removed from its group,
one that stays is still a member."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from gateway.departure import Departure, StatefulSetPod, scaled_down
from gateway.kafka.topics import TopicAdmin
from tests._kubernetes import TOKEN, KubernetesApi, kubernetes_api, self_signed, service_account
from tests.conftest import wait_for


def _pod(api: KubernetesApi, account: Path, pod: str = "gw-poller-1") -> StatefulSetPod:
    return StatefulSetPod(
        api_url=api.url, service_account_dir=account, statefulset="gw-poller", pod=pod, timeout_seconds=1.0
    )


@pytest.mark.parametrize(
    ("replicas", "pod", "going"),
    [
        (3, "gw-poller-1", False),  # a restart, a rollout, an eviction
        (3, "gw-poller-2", False),
        (2, "gw-poller-2", True),  # scaled from 3 to 2: the last pod goes
        (1, "gw-poller-1", True),
        (0, "gw-poller-0", True),
        (1, "gw-poller-0", False),
    ],
)
async def test_a_pod_at_or_above_the_replica_count_is_going(
    tmp_path: Path, replicas: int, pod: str, going: bool
) -> None:
    async with kubernetes_api(KubernetesApi(replicas={"gw-poller": replicas})) as api:
        assert await scaled_down(_pod(api, service_account(tmp_path), pod)) is going
    assert api.asked == [("/apis/apps/v1/namespaces/apps/statefulsets/gw-poller", f"Bearer {TOKEN}")]


async def test_a_statefulset_that_is_gone_means_going(tmp_path: Path) -> None:
    async with kubernetes_api(KubernetesApi(replicas={"another": 3})) as api:
        assert await scaled_down(_pod(api, service_account(tmp_path))) is True


@pytest.mark.parametrize(
    "api",
    [
        KubernetesApi(status=403, body=b'{"kind": "Status", "reason": "Forbidden"}'),
        KubernetesApi(status=401),
        KubernetesApi(status=500),
        KubernetesApi(status=503),
        KubernetesApi(body=b"<html>not json</html>"),
        KubernetesApi(body=b'{"kind": "StatefulSet", "spec": {}}'),
        KubernetesApi(body=b'{"spec": {"replicas": "many"}}'),
        KubernetesApi(body=b"[]"),
        KubernetesApi(hang=True),
    ],
    ids=[
        "forbidden",
        "unauthorized",
        "error",
        "unavailable",
        "not-json",
        "no-replicas",
        "bad-replicas",
        "not-an-object",
        "hangs",
    ],
)
async def test_an_answer_that_says_nothing_means_staying(
    tmp_path: Path, api: KubernetesApi, caplog: pytest.LogCaptureFixture
) -> None:
    async with kubernetes_api(api):
        with caplog.at_level(logging.INFO, logger="gateway.departure"):
            assert await scaled_down(_pod(api, service_account(tmp_path))) is False
    assert len(api.asked) == 1
    assert "cannot read statefulset gw-poller, so staying in the groups" in caplog.text
    assert TOKEN not in caplog.text


async def test_an_api_that_does_not_answer_means_staying(tmp_path: Path) -> None:
    async with kubernetes_api() as api:
        pod = _pod(api, service_account(tmp_path))
    assert await scaled_down(pod) is False  # the server has stopped: connection refused


async def test_without_a_service_account_it_stays_and_asks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with kubernetes_api(KubernetesApi(replicas={"gw-poller": 0})) as api:
        with caplog.at_level(logging.WARNING, logger="gateway.departure"):
            assert await scaled_down(_pod(api, tmp_path / "no-account")) is False
    assert api.asked == []
    assert "cannot read the pod's service account, so staying in the groups" in caplog.text


async def test_over_https_it_trusts_the_clusters_ca_only(tmp_path: Path) -> None:
    account = service_account(tmp_path / "account")
    tls = self_signed(account)  # the cluster's CA, as mounted beside the token
    async with kubernetes_api(KubernetesApi(replicas={"gw-poller": 1}), tls=tls) as api:
        assert api.url.startswith("https://")
        assert await scaled_down(_pod(api, account)) is True
        other = service_account(tmp_path / "other")
        self_signed(other)  # a CA that did not sign the server's certificate
        assert await scaled_down(_pod(api, other)) is False
    assert len(api.asked) == 1, "nothing is sent to a server it cannot verify"


# Leaving, against the broker ------------------------------------------------------------------------


async def _stopped_static_member(bootstrap: str, topic: str, group: str, instance: str) -> None:
    """A static member that joined and stopped: the group keeps it until its session ends."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        group_instance_id=instance,
        client_id=instance,
        session_timeout_ms=60_000,  # far longer than the test: only a removal makes it go
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await wait_for(lambda: bool(consumer.assignment()), within=30)
    finally:
        await consumer.stop()


async def _members(admin: TopicAdmin, group: str) -> list[str]:
    return [member.client_id for member in (await admin.describe_group(group)).members]


@pytest.mark.parametrize(("replicas", "going"), [(1, True), (2, False)])
async def test_a_member_leaves_every_group_only_if_it_is_going_and_asks_once(
    kafka_bootstrap: str, unique: str, tmp_path: Path, replicas: int, going: bool
) -> None:
    topic, groups = f"departure-{unique}", [f"departure-{unique}-pollers", f"departure-{unique}-deliverers"]
    async with (
        TopicAdmin(bootstrap_servers=kafka_bootstrap, replication_factor=1) as admin,
        kubernetes_api(KubernetesApi(replicas={"gw-poller": replicas})) as api,
    ):
        await admin.ensure(topic, partitions=1)
        for group in groups:
            await _stopped_static_member(kafka_bootstrap, topic, group, "gw-poller-1")
            assert await _members(admin, group) == ["gw-poller-1"]
        departure = Departure(
            instance_id="gw-poller-1", admin=admin, pod=_pod(api, service_account(tmp_path))
        )
        for group in groups:
            await departure.leave(group)
            assert await _members(admin, group) == ([] if going else ["gw-poller-1"])
    assert len(api.asked) == 1, "decided once, for every group"


async def test_without_a_pod_a_member_always_leaves_and_leaving_twice_is_harmless(
    kafka_bootstrap: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic, group = f"departure-{unique}", f"departure-{unique}-group"
    async with TopicAdmin(bootstrap_servers=kafka_bootstrap, replication_factor=1) as admin:
        await admin.ensure(topic, partitions=1)
        await _stopped_static_member(kafka_bootstrap, topic, group, "replica-a")
        departure = Departure(instance_id="replica-a", admin=admin)
        with caplog.at_level(logging.INFO, logger="gateway.departure"):
            await departure.leave(group)
            assert await _members(admin, group) == []
            await departure.leave(group)
    assert f"left group {group} for good" in caplog.text
    assert f"not a member of group {group} any more" in caplog.text
