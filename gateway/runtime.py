"""The composition root: builds each role's components from the settings and runs them until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.api import create_api_app, create_metrics_app
from gateway.api.cluster import PollerGroup
from gateway.api.columns import ColumnCheck
from gateway.api.rates import MinuteRates
from gateway.api.stream import EventTail
from gateway.api.test_event import TestEventSender
from gateway.delivery.attempt import webhook_session
from gateway.delivery.history import DeliveryHistory
from gateway.delivery.runner import DeliveryViews, delivery_topics, open_delivery_views, start_deliverer
from gateway.departure import Departure, StatefulSetPod
from gateway.errors import ConfigError, InstanceValidationError, TaskCrashed
from gateway.health import Health
from gateway.instances import SecretBox, validate_instance
from gateway.instances.declared import load_declared_instances
from gateway.instances.log import Body, InstanceLog, decode_body
from gateway.instances.model import Instance, SourceConnection
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.kafka.transactions import TransactionalWriter
from gateway.metrics import KafkaMetrics, PollingMetrics, SourceMetrics, TaskMetrics, process_registry
from gateway.polling.membership import MembershipConfig, PollerMembership
from gateway.polling.supervisor import PollerSupervisor
from gateway.settings import Settings
from gateway.sources.base import Source
from gateway.sources.dynamics import DynamicsSource
from gateway.sources.dynamics.transport import RetryPolicy
from gateway.tasks import Watchdog, cancel_and_wait

logger = logging.getLogger(__name__)

_TEST_EVENT_CONNECTIONS = 4  # test events are a person's clicks, not a load
_COLUMN_CHECK_TIMEOUT_SECONDS = 10.0

Role = Literal["all", "poller", "deliverer", "api"]
ROLES: tuple[Role, ...] = ("all", "poller", "deliverer", "api")


@dataclass(frozen=True, slots=True)
class RunningGateway:
    """A started gateway, as `start_gateway` yields it: where its servers listen (ports resolved when
    0 was asked for), its admin token and poller membership, and a wait for a crash."""

    api_url: str | None
    metrics_url: str
    admin_token: str
    # Returns only when a vital task ended by itself, raising TaskCrashed (Watchdog.wait).
    failure: Callable[[], Coroutine[Any, Any, None]]
    membership: PollerMembership | None = None


def resolve_admin_token(settings: Settings) -> str:
    """The configured token, or a generated one written to a private file (never to the log)."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    token = secrets.token_urlsafe(32)
    path = settings.admin_token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    logger.warning("GATEWAY_ADMIN_TOKEN is not set; generated an admin token, readable in %s", path)
    return token


def poller_group_id(settings: Settings) -> str:
    return f"{settings.state_topic_prefix}-pollers"


def replica_id(settings: Settings) -> str:
    """How this process shows in /cluster and to CRM APIs: its static identity, or host and pid."""
    return settings.group_instance_id or f"{socket.gethostname()}-{os.getpid()}"


def secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key is None:
        raise ConfigError(
            "GATEWAY_SECRET_KEY must be set (at least 32 characters); it encrypts instance secrets"
        )
    return SecretBox(settings.secret_key, previous=settings.secret_key_previous)


async def _serve(stack: AsyncExitStack, app: web.Application, host: str, port: int) -> str:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return f"http://{host}:{bound[1]}"


@asynccontextmanager
async def start_gateway(
    settings: Settings,
    *,
    role: Role = "all",
    instances_path: Path | None = None,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[RunningGateway]:
    """Start every component of `role`; on exit stop them in reverse order."""
    registry = registry if registry is not None else process_registry()
    topics = TopicNames(prefix=settings.topic_prefix, state_prefix=settings.state_topic_prefix)
    delivery = settings.delivery()
    box = secret_box(settings)
    health = Health()
    kafka_metrics = KafkaMetrics(registry)
    source_metrics = SourceMetrics(registry)
    watchdog = Watchdog(TaskMetrics(registry))
    health.watch("tasks", watchdog.healthy)
    bootstrap = settings.kafka_bootstrap_servers
    async with AsyncExitStack() as stack:
        admin = await stack.enter_async_context(
            TopicAdmin(bootstrap_servers=bootstrap, replication_factor=settings.topic_replication_factor)
        )
        state_topics = [topics.instances, topics.checkpoints]
        if settings.row_state:
            state_topics.append(topics.row_state)
        for name in state_topics:
            await admin.ensure(name, partitions=settings.state_partitions, compacted=True)
        departure = _departure(settings, admin)
        health.watch("kafka", lambda: True)
        metrics_url = await _serve(
            stack,
            create_metrics_app(registry=registry, health=health),
            settings.api_host,
            settings.metrics_port,
        )

        membership = supervisor = None
        if role in ("all", "poller"):
            membership, supervisor = await _start_pollers(
                stack,
                settings,
                topics,
                admin,
                registry,
                kafka_metrics,
                source_metrics,
                box,
                watchdog,
                departure,
            )
            health.watch("partitions assigned", membership.assigned.is_set)

        instances: dict[str, Instance] = {}
        revisions: dict[str, str] = {}

        async def on_instance(instance_id: str, body: Body | None) -> None:
            instance = _instance_or_none(instance_id, body)
            if instance is None or body is None:
                instances.pop(instance_id, None)
                revisions.pop(instance_id, None)
            else:
                instances[instance_id] = instance
                revisions[instance_id] = str(body.get("updatedDate"))

        log = await stack.enter_async_context(
            InstanceLog(
                bootstrap_servers=bootstrap,
                topic=topics.instances,
                partitions=settings.state_partitions,
                box=box,
                listener=on_instance,
                watchdog=watchdog,
            )
        )
        if instances_path is not None:
            for instance_id, body in load_declared_instances(instances_path).items():
                if log.get(instance_id) != body:
                    await log.put(instance_id, body)

        views: DeliveryViews | None = None
        if role in ("all", "deliverer"):
            if departure is not None:  # runs once the deliverer has committed and stopped its consumer
                stack.push_async_callback(departure.leave, delivery_topics(delivery, topics).group_id)
            deliverer = await stack.enter_async_context(
                start_deliverer(
                    delivery,
                    topics=topics,
                    admin=admin,
                    instances=instances.get,
                    revisions=revisions.get,
                    registry=registry,
                    kafka_metrics=kafka_metrics,
                    watchdog=watchdog,
                )
            )
            views = deliverer.views
        elif role == "api":
            views = await stack.enter_async_context(
                open_delivery_views(
                    delivery,
                    topics=topics,
                    admin=admin,
                    registry=registry,
                    kafka_metrics=kafka_metrics,
                    watchdog=watchdog,
                    revisions=revisions.get,
                )
            )

        api_url = None
        admin_token = resolve_admin_token(settings)
        if role in ("all", "api") and views is not None:
            poller_group = PollerGroup(
                admin=admin,
                group_id=poller_group_id(settings),
                instances_topic=topics.instances,
                partitions=settings.state_partitions,
            )
            app = create_api_app(
                instance_log=log,
                admin_token=admin_token,
                health=health,
                poller_group=poller_group,
                delivery=views,
                delivery_history=DeliveryHistory(
                    bootstrap_servers=bootstrap,
                    topic=delivery_topics(delivery, topics).deliveries,
                    partitions=settings.delivery_topic_partitions,
                ),
                event_tail=EventTail(
                    bootstrap_servers=bootstrap,
                    topics=topics,
                    admin=admin,
                    topic_partitions=settings.topic_partitions,
                ),
                rates=await stack.enter_async_context(MinuteRates(registry)),
                test_events=TestEventSender(
                    session=await stack.enter_async_context(
                        webhook_session(
                            allowed=settings.callback_allowed_networks, limit=_TEST_EVENT_CONNECTIONS
                        )
                    ),
                    time_limit=settings.delivery_timeout_seconds,
                    retry_after_max=settings.delivery_retry_after_max_seconds,
                    rotation_grace=settings.signature_rotation_grace_seconds,
                ),
                column_check=await _column_check(stack, settings, source_metrics),
                callback_allowed_networks=settings.callback_allowed_networks,
                poll_status=None if supervisor is None else supervisor.status,
            )
            api_url = await _serve(stack, app, settings.api_host, settings.api_port)
        # The shutdown, in this order: not ready; the pollers stop, aborting their open transactions;
        # then the rest in reverse order, the deliverer draining its deliveries in flight. A static
        # member going for good leaves each group as soon as its consumer of it has stopped.
        if supervisor is not None:
            stack.push_async_callback(supervisor.stop)
        stack.callback(setattr, health, "shutting_down", True)
        logger.info("gateway started", extra={"role": role, "api": api_url, "metrics": metrics_url})
        yield RunningGateway(
            api_url=api_url,
            metrics_url=metrics_url,
            admin_token=admin_token,
            failure=watchdog.wait,
            membership=membership,
        )


async def _column_check(
    stack: AsyncExitStack, settings: Settings, source_metrics: SourceMetrics
) -> ColumnCheck:
    """The API's check of `select` columns: one try per request, so that a save waits seconds at most
    for an organisation that does not answer."""
    session = await stack.enter_async_context(aiohttp.ClientSession())
    replica = replica_id(settings)

    def source_for(connection: SourceConnection) -> DynamicsSource:
        return DynamicsSource(
            connection,
            session=session,
            metrics=source_metrics,
            max_concurrency=1,
            request_timeout=min(_COLUMN_CHECK_TIMEOUT_SECONDS, settings.http_timeout_seconds),
            retry_policy=RetryPolicy(tries=1, throttled_tries=1),
            replica_id=replica,
        )

    return ColumnCheck(source_for)


async def _start_pollers(
    stack: AsyncExitStack,
    settings: Settings,
    topics: TopicNames,
    admin: TopicAdmin,
    registry: CollectorRegistry,
    kafka_metrics: KafkaMetrics,
    source_metrics: SourceMetrics,
    box: SecretBox,
    watchdog: Watchdog,
    departure: Departure | None,
) -> tuple[PollerMembership, PollerSupervisor]:
    bootstrap = settings.kafka_bootstrap_servers
    polling_metrics = PollingMetrics(registry, per_instance=settings.metrics_per_instance)
    session = await stack.enter_async_context(aiohttp.ClientSession())
    replica = replica_id(settings)

    def source_for(instance: Instance) -> Source:
        return DynamicsSource(
            instance.source,
            session=session,
            metrics=source_metrics,
            max_concurrency=settings.source_concurrency,
            request_timeout=settings.http_timeout_seconds,
            replica_id=replica,
        )

    def writer_for(partition: int, still_owned: Callable[[], Awaitable[bool]]) -> TransactionalWriter:
        return TransactionalWriter(
            bootstrap_servers=bootstrap,
            transactional_id=f"{settings.state_topic_prefix}-poller-{partition}",
            metrics=kafka_metrics,
            may_recover=still_owned,
        )

    def decode_instance(instance_id: str, value: bytes | None) -> Instance | None:
        body = None if value is None else decode_body(box, instance_id, value)
        return _instance_or_none(instance_id, body)

    supervisor = await stack.enter_async_context(
        PollerSupervisor(
            source_factory=source_for,
            admin=admin,
            topics=topics,
            state_partitions=settings.state_partitions,
            topic_partitions=settings.topic_partitions,
            overlap_seconds=settings.poll_overlap_seconds,
            poll_concurrency=settings.poll_concurrency,
            metrics=polling_metrics,
            watchdog=watchdog,
            event_mode=settings.event_mode,
        )
    )
    config = MembershipConfig(
        bootstrap_servers=bootstrap,
        instances_topic=topics.instances,
        checkpoints_topic=topics.checkpoints,
        row_state_topic=topics.row_state if settings.row_state else None,
        group_id=poller_group_id(settings),
        group_instance_id=settings.group_instance_id,
        replica_id=replica,
        session_timeout_ms=int(settings.poller_session_timeout_seconds * 1000),
    )
    if departure is not None:  # runs once the membership has stopped its pollers and its consumer
        stack.push_async_callback(departure.leave, config.group_id)
    membership = await stack.enter_async_context(
        PollerMembership(
            config,
            supervisor=supervisor,
            writer_factory=writer_for,
            decode_instance=decode_instance,
            metrics=polling_metrics,
            admin=admin,
            watchdog=watchdog,
            consumer_lag=kafka_metrics.consumer_lag,
        )
    )
    return membership, supervisor


def _departure(settings: Settings, admin: TopicAdmin) -> Departure | None:
    """How this replica leaves its consumer groups when it stops; None: it stays a member until its
    session ends (a static member), or leaves by itself (any other)."""
    instance_id = settings.group_instance_id
    if settings.leave_group_on_shutdown == "never" or instance_id is None:
        return None
    if settings.leave_group_on_shutdown == "always":
        return Departure(instance_id=instance_id, admin=admin)
    if settings.kubernetes_statefulset is None:  # refused by the settings already; mypy cannot know
        raise ConfigError(
            "GATEWAY_LEAVE_GROUP_ON_SHUTDOWN=if-scaled-down needs GATEWAY_KUBERNETES_STATEFULSET"
        )
    pod = StatefulSetPod(
        api_url=settings.kubernetes_api_url,
        service_account_dir=settings.kubernetes_service_account_dir,
        statefulset=settings.kubernetes_statefulset,
        pod=instance_id,
    )
    return Departure(instance_id=instance_id, admin=admin, pod=pod)


def _instance_or_none(instance_id: str, body: Mapping[str, object] | None) -> Instance | None:
    if body is None:
        return None
    try:
        return validate_instance(body, instance_id=instance_id).instance
    except InstanceValidationError as exc:
        # Stored by an older version or by hand: keep the gateway up, and say which instance is idle.
        logger.error(  # noqa: TRY400 - the problems list is the whole story; a traceback adds nothing
            "stored instance is invalid and is not polled: %s", exc, extra={"instance_id": instance_id}
        )
        return None


async def run_until_stopped(
    settings: Settings,
    *,
    role: Role,
    instances_path: Path | None,
    stop: asyncio.Event,
    alongside: Callable[[RunningGateway], Coroutine[Any, Any, None]] | None = None,
) -> bool:
    """Run the gateway until `stop` is set, then shut it down within GATEWAY_SHUTDOWN_TIMEOUT_SECONDS.

    `alongside`, when given, runs while the gateway is up (the demo prints what it receives), and is
    cancelled before the shutdown begins.

    Returns whether it stopped cleanly. Past the bound, what still runs is logged and cancelled, and
    the result is False; so is it when a step of the shutdown failed. Errors at startup are raised.
    """
    bound = settings.shutdown_timeout_seconds

    async def lifetime() -> None:
        async with start_gateway(settings, role=role, instances_path=instances_path) as running:
            companion = None if alongside is None else asyncio.create_task(alongside(running))
            try:
                await wait_for_stop(stop, running.failure)
            except Exception:
                stop.set()  # what a failure leaves must stop within the bound too
                raise
            finally:
                if companion is not None:
                    await cancel_and_wait(companion)
            logger.info("shutting down within %g s", bound)

    gateway = asyncio.create_task(lifetime(), name="gateway")
    signalled = asyncio.create_task(stop.wait(), name="gateway-stop")
    try:
        await asyncio.wait({gateway, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if gateway.done() and not stop.is_set():
        gateway.result()  # it could not start, or crashed
        return True
    started = time.monotonic()
    await asyncio.wait({gateway}, timeout=bound)
    if not gateway.done():
        logger.error(
            "shutdown took longer than %g s; cancelling what has not stopped",
            bound,
            extra={"unfinished": _unfinished()},
        )
        await _cancel(gateway)
        return False
    if not gateway.cancelled() and (error := gateway.exception()) is not None:
        if isinstance(error, TaskCrashed):
            logger.error("stopped because task %s ended by itself", error.task)
        else:
            logger.error("shutdown failed", exc_info=error)
        return False
    logger.info("stopped in %.1f s", time.monotonic() - started)
    return True


async def wait_for_stop(stop: asyncio.Event, failure: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    """Return when `stop` is set; raise what stopped a component, if one stops by itself first (the
    Watchdog's TaskCrashed). A process that lost a vital task must exit, so that whatever supervises
    it starts it again: idle, it would keep its partitions and their work would wait for a person."""
    if failure is None:
        await stop.wait()
        return
    stopped = asyncio.create_task(stop.wait(), name="gateway-stop")
    failed = asyncio.create_task(failure(), name="gateway-failure")
    try:
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*(task for task in (stopped, failed) if not task.done()))
    if not stop.is_set():
        failed.result()
        raise RuntimeError("a component stopped by itself without an error")
    if failed.done() and not failed.cancelled():
        failed.exception()  # retrieved here; the component raises it again as it closes


_CANCEL_GRACE_SECONDS = 5.0


async def _cancel(gateway: asyncio.Task[None]) -> None:
    """Cancel the shutdown where it is, and again wherever it goes next (each cleanup step awaits on
    its own), until it ends or the grace is spent."""
    deadline = time.monotonic() + _CANCEL_GRACE_SECONDS
    while not gateway.done() and time.monotonic() < deadline:
        gateway.cancel()
        await asyncio.wait({gateway}, timeout=0.1)
    if not gateway.done():
        logger.error("the shutdown ignored its cancellation", extra={"unfinished": _unfinished()})


def _unfinished() -> list[str]:
    """The named tasks still running (pollers `poll-<instance>:<resource>`, deliveries
    `deliver-<topic>-<partition>`, ...), counted by name, then how many unnamed ones."""
    running = Counter(
        task.get_name()
        for task in asyncio.all_tasks()
        if not task.done() and task is not asyncio.current_task()
    )
    named = [f"{name} x{count}" if count > 1 else name for name, count in sorted(running.items())]
    unnamed = sum(count for name, count in running.items() if name.startswith("Task-"))
    listed = [entry for entry in named if not entry.startswith("Task-")]
    return [*listed, f"{unnamed} other tasks"] if unnamed else listed
