"""Whether a stopping replica is going away for good, and then its leaving of its consumer groups.

A static member (GATEWAY_GROUP_INSTANCE_ID) does not leave its groups when it stops: a restart within
its session gets its partitions back without a rebalance. A replica that is scaled away would leave
its partitions waiting out the session instead, so on SIGTERM it asks the group coordinator to remove
it (KIP-345, kafka/static_members.py), and its partitions move within seconds.

Kubernetes sends the same SIGTERM for both. A StatefulSet scale-down lowers `spec.replicas` first,
then deletes the pods whose ordinal is at or above it; a restart, a rollout or an eviction leaves
`spec.replicas` as it is. So with `if-scaled-down` the replica reads its StatefulSet at shutdown
(`get` on that one StatefulSet, which the Helm chart grants), and leaves when its ordinal is at or
above `spec.replicas`, or when the StatefulSet is gone (uninstalled). When it cannot tell, it stays:
its partitions then move after the session timeout, as they would without this.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.errors import PublishError
from gateway.kafka.topics import TopicAdmin

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatefulSetPod:
    """The StatefulSet pod this process runs as, and how to ask the Kubernetes API about its set."""

    api_url: str
    service_account_dir: Path  # `token`, `namespace` and (for https) `ca.crt`, as Kubernetes mounts them
    statefulset: str
    pod: str  # <statefulset>-<ordinal>, checked by the settings
    # The answer is needed within the shutdown bound; an API server that slow would not give one.
    timeout_seconds: float = 3.0

    @property
    def ordinal(self) -> int:
        return int(self.pod.removeprefix(f"{self.statefulset}-"))


async def scaled_down(pod: StatefulSetPod) -> bool:
    """Whether the pod's StatefulSet now wants at most `ordinal` replicas, or is gone. False when the
    API cannot tell: staying costs a session timeout, leaving on a restart costs two rebalances."""
    account = pod.service_account_dir
    try:
        # Read at shutdown, not at start: the kubelet rotates the projected token.
        token = (account / "token").read_text().strip()
        namespace = (account / "namespace").read_text().strip()
    except OSError as exc:
        logger.warning("cannot read the pod's service account, so staying in the groups: %s", exc)
        return False
    url = f"{pod.api_url}/apis/apps/v1/namespaces/{namespace}/statefulsets/{pod.statefulset}"
    ca = account / "ca.crt"
    tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca.exists() else True
    timeout = aiohttp.ClientTimeout(total=pod.timeout_seconds)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as http,
            http.get(url, headers={"Authorization": f"Bearer {token}"}, ssl=tls) as response,
        ):
            if response.status == 404:
                logger.info("statefulset %s is gone: leaving the groups", pod.statefulset)
                return True
            response.raise_for_status()
            replicas = int((await response.json())["spec"]["replicas"])
    except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "cannot read statefulset %s, so staying in the groups: %s",
            pod.statefulset,
            str(exc) or type(exc).__name__,
        )
        return False
    going = pod.ordinal >= replicas
    logger.info(
        "statefulset %s wants %d replicas: pod %s %s",
        pod.statefulset,
        replicas,
        pod.pod,
        "is scaled away, leaving the groups" if going else "comes back, staying in the groups",
    )
    return going


class Departure:
    """How a static member stops. The first `leave` decides whether it goes for good: always without
    a `pod`, else if its StatefulSet was scaled below it. If it goes, each `leave` removes it from one
    group; its consumer of that group must have stopped, or it would join again."""

    def __init__(self, *, instance_id: str, admin: TopicAdmin, pod: StatefulSetPod | None = None) -> None:
        self._instance_id = instance_id
        self._admin = admin
        self._pod = pod
        self._going: bool | None = None

    async def going(self) -> bool:
        if self._going is None:
            self._going = True if self._pod is None else await scaled_down(self._pod)
        return self._going

    async def leave(self, group_id: str) -> None:
        if not await self.going():
            return
        try:
            removed = await self._admin.remove_static_member(group_id, self._instance_id)
        except PublishError as exc:
            logger.warning(
                "could not leave group %s; its partitions move when the session ends: %s", group_id, exc
            )
            return
        logger.info("left group %s for good" if removed else "not a member of group %s any more", group_id)
