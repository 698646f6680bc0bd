"""`event-gateway run` as a child process of a benchmark, its metrics, and the times in its log."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bench._procs import Child, free_port
from gateway.instances import SecretBox, validate_instance
from gateway.instances.log import InstanceLog
from gateway.kafka.topics import TopicNames
from gateway.metrics import TaskMetrics
from gateway.tasks import Watchdog

ADMIN_TOKEN = "bench-admin-token"
SECRET_KEY = "bench-secret-key-that-is-long-enough-0123456789"


class Gateway(Child):
    """The gateway's own entry point, configured through GATEWAY_* variables like a deployment."""

    def __init__(
        self,
        name: str,
        *,
        log_dir: Path,
        bootstrap: str,
        prefix: str,
        instances: Path | None = None,
        role: str = "poller",
        settings: Mapping[str, str] | None = None,
        python: Sequence[str] = (sys.executable,),
    ) -> None:
        self.metrics_port = free_port()
        self.api_port = free_port()
        env = {
            "GATEWAY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "GATEWAY_TOPIC_PREFIX": prefix,
            "GATEWAY_STATE_TOPIC_PREFIX": f"{prefix}-gw",
            "GATEWAY_API_HOST": "127.0.0.1",
            "GATEWAY_API_PORT": str(self.api_port),
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_SECRET_KEY": SECRET_KEY,
            **(settings or {}),
        }
        argv = ["-m", "gateway.cli", "run", "--role", role]
        if instances is not None:
            argv += ["--instances", str(instances)]
        super().__init__(name, argv, log_dir=log_dir, env=env, python=python)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def metrics(self) -> Metrics:
        return Metrics(await self.metrics_text())

    async def metrics_text(self) -> str:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.get(f"{self.metrics_url}/metrics") as response,
        ):
            return await response.text()

    def log_times(self, message: str) -> list[tuple[float, dict[str, object]]]:
        """(epoch seconds, entry) of each JSON log line whose message is `message`."""
        found = []
        for line in self.log.read_bytes().splitlines():
            if not line.startswith(b"{"):
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if entry.get("message") == message:
                found.append((datetime.fromisoformat(entry["time"]).timestamp(), entry))
        return found


class Metrics:
    """One scrape of /metrics."""

    def __init__(self, text: str) -> None:
        self._samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        return sum(
            value
            for sample, sample_labels, value in self._samples
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )


async def put_instances(
    bootstrap: str,
    prefix: str,
    bodies: Sequence[dict[str, object]],
    *,
    state_partitions: int,
    concurrency: int = 32,
) -> None:
    """Store instances as `POST /instances` does (validated, timestamped, secrets encrypted) in the
    instances topic of the gateway whose state prefix is `<prefix>-gw`; it starts polling them."""

    async def ignore(_instance_id: str, _body: object) -> None:
        return None

    topics = TopicNames(prefix=prefix, state_prefix=f"{prefix}-gw")
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    slots = asyncio.Semaphore(concurrency)
    async with InstanceLog(
        bootstrap_servers=bootstrap,
        topic=topics.instances,
        partitions=state_partitions,
        box=SecretBox(SECRET_KEY),
        listener=ignore,
        watchdog=Watchdog(TaskMetrics(CollectorRegistry())),
    ) as log:

        async def put(body: dict[str, object]) -> None:
            instance_id = str(body["id"])
            validate_instance(body, instance_id=instance_id)
            async with slots:
                await log.put(instance_id, {**body, "createdDate": now, "updatedDate": now})

        await asyncio.gather(*(put(body) for body in bodies))


def owns_partitions(gateway: Gateway, partitions: int) -> Callable[[], Awaitable[bool]]:
    """Readiness of a poller replica: it owns all `partitions` state partitions (the only replica)."""

    async def check() -> bool:
        try:
            metrics = await gateway.metrics()
        except (aiohttp.ClientError, TimeoutError):
            return False
        return metrics.total("gateway_poller_partitions_owned") >= partitions

    return check
