"""The deliverer role, assembled: `start_deliverer` creates the delivery topics and runs a `Deliverer`;
`open_delivery_views` gives the role `api`, which serves the API without delivering, its views of the
delivery: the dead letters and the endpoints' states.

`Deliverer` builds, on entry, the pieces of `gateway.delivery` around one consumer of the delivery
group: the endpoints' delivery state, the webhook session, a transactional writer per partition held
(`PartitionWriters`), the dead letters, the `RecordHandler` and `HostSlots` that make each attempt,
the `DeliveryReader` that feeds them and the `Committer` that commits what finished. Reading and
committing run as one vital task of the watchdog. `retry_policy` and `delivery_topics` derive the
retry schedule and the topic layout from the settings; `runtime.py` also uses `delivery_topics` to
name the group a departing replica leaves.

`runtime.py` enters `start_deliverer` (roles `deliverer` and `all`) after the `InstanceLog`, which
reads every instance before it returns, so no event finds its instance missing at start. It passes
`instances.get` and `revisions.get`, dicts its InstanceLog listener keeps: an instance id to the
`Instance` validated from its latest body (deleted or invalid: absent), and to that body's
`updatedDate`. The API gets `deliverer.views` (or `open_delivery_views`' for the role `api`)
through `create_api_app`.

Shutdown, in order: stop the read and commit task; let deliveries in flight finish within
`drain_grace` and cancel the rest; commit what finished, within `last_commit_grace`; then stop the
consumer (a dynamic member leaves the group; a static one keeps its place, and `Departure` removes
it if it goes for good), the dead letters, the partition writers, the webhook session and the
endpoints' delivery state.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import TracebackType

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from gateway.delivery.attempt import webhook_session
from gateway.delivery.committer import Committer
from gateway.delivery.consumer import DeliveryReader
from gateway.delivery.dead_letters import DeadLetters
from gateway.delivery.endpoint_state import EndpointStates, RevisionLookup, tail_endpoint_states
from gateway.delivery.fencing import PartitionWriters
from gateway.delivery.handler import HandlerConfig, InstanceLookup, RecordHandler
from gateway.delivery.host_slots import HostSlots
from gateway.delivery.offsets import Windows
from gateway.delivery.retry import RetryPolicy
from gateway.delivery.topic_names import DeliveryTopics
from gateway.errors import PublishError
from gateway.kafka.topics import TopicAdmin, TopicNames
from gateway.metrics import DeliveryMetrics, KafkaMetrics
from gateway.settings import DeliverySettings
from gateway.tasks import VitalTask, Watchdog

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryViews:
    """What the API reads of the delivery: the dead letters, to list and replay, and each endpoint's
    state."""

    dead_letters: DeadLetters
    endpoints: EndpointStates


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def retry_policy(settings: DeliverySettings) -> RetryPolicy:
    return RetryPolicy(
        schedule=settings.retry_schedule,
        inline_max=settings.inline_retry_max_seconds,
        retry_after_max=settings.retry_after_max_seconds,
        breaker_cooldown=settings.breaker_cooldown_seconds,
    )


def delivery_topics(settings: DeliverySettings, topics: TopicNames) -> DeliveryTopics:
    return DeliveryTopics.build(
        topic_prefix=topics.prefix, state_prefix=topics.state_prefix, tiers=retry_policy(settings).tiers
    )


async def ensure_delivery_topics(
    admin: TopicAdmin, layout: DeliveryTopics, partitions: int, *, history_retention_hours: float
) -> None:
    for name in layout.retry_topics:
        await admin.ensure(name, partitions=partitions)
    await admin.ensure(layout.dead_letters, partitions=partitions, compacted=True)
    await admin.ensure(layout.state, partitions=partitions, compacted=True)
    # Created even with the history off, so that the API's listing finds a topic (and no history).
    retention_ms = int(history_retention_hours * 3_600_000) or None
    await admin.ensure(layout.deliveries, partitions=partitions, compacted=True, retention_ms=retention_ms)


class Deliverer:
    """The webhook deliverer of one process. `dead_letters` is what the replay API needs."""

    def __init__(
        self,
        settings: DeliverySettings,
        *,
        layout: DeliveryTopics,
        instances: InstanceLookup,
        metrics: DeliveryMetrics,
        kafka_metrics: KafkaMetrics,
        watchdog: Watchdog,
        revisions: RevisionLookup | None = None,
        unknown_instance_grace: float = 5.0,
    ) -> None:
        self._settings = settings
        self._watchdog = watchdog
        self._layout = layout
        self._instances = instances
        self._metrics = metrics
        self._kafka_metrics = kafka_metrics
        self._revisions = revisions
        self._unknown_instance_grace = unknown_instance_grace
        self._stack = AsyncExitStack()
        self._views: DeliveryViews | None = None
        self._reader: DeliveryReader | None = None
        self._committer: Committer | None = None
        self._task: VitalTask | None = None
        self._state = _State.NEW

    @property
    def views(self) -> DeliveryViews:
        if self._views is None:
            raise RuntimeError("the deliverer is not running")
        return self._views

    @property
    def dead_letters(self) -> DeadLetters:
        return self.views.dead_letters

    @property
    def drain_grace(self) -> float:
        """How long deliveries in flight may take to finish on exit: a request's timeout, but at most
        half the shutdown bound, which leaves the other half to commit and close."""
        settings = self._settings
        return min(settings.timeout_seconds, settings.shutdown_timeout_seconds / 2)

    @property
    def last_commit_grace(self) -> float:
        """How long the last commit may take on exit: a quarter of the shutdown bound. aiokafka waits
        for a coordinator without end, and one that is gone (the broker died first) must not hold the
        shutdown past its bound; what the commit covered is then delivered again by the next owner."""
        return self._settings.shutdown_timeout_seconds / 4

    @property
    def pending(self) -> int:
        """Events read and not yet finished."""
        return 0 if self._reader is None else self._reader.pending

    async def __aenter__(self) -> Deliverer:
        if self._state is not _State.NEW:
            raise RuntimeError("a deliverer cannot be started twice")
        self._state = _State.RUNNING
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            self._state = _State.CLOSED
            raise
        return self

    async def _start(self, stack: AsyncExitStack) -> None:
        settings, layout = self._settings, self._layout
        bootstrap = settings.kafka_bootstrap_servers
        partitions = settings.topic_partitions
        policy = retry_policy(settings)
        endpoints = await stack.enter_async_context(
            tail_endpoint_states(
                bootstrap_servers=bootstrap,
                topic=layout.state,
                partitions=partitions,
                metrics=self._metrics,
                watchdog=self._watchdog,
                quiet_after=policy.quiet_after,
                revisions=self._revisions,
            )
        )
        session = await stack.enter_async_context(
            webhook_session(allowed=settings.callback_allowed_networks, limit=settings.concurrency)
        )
        # Entered before the consumer, so left after it: the last commit needs them.
        writers = await stack.enter_async_context(
            PartitionWriters(
                bootstrap_servers=bootstrap, group_id=layout.group_id, metrics=self._kafka_metrics
            )
        )
        dead_letters = await stack.enter_async_context(
            DeadLetters(
                bootstrap_servers=bootstrap,
                topics=layout,
                partitions=partitions,
                metrics=self._metrics,
                kafka_metrics=self._kafka_metrics,
            )
        )
        self._views = DeliveryViews(dead_letters, endpoints)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=layout.group_id,
            client_id=f"{layout.group_id}-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            metadata_max_age_ms=settings.metadata_max_age_ms,
            # Static membership (GATEWAY_GROUP_INSTANCE_ID): a restarted replica gets its partitions
            # back at once instead of after a rebalance; the id is per group, so the poller's is fine.
            group_instance_id=settings.group_instance_id,
        )
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        self._kafka_metrics.consumer_lag.track(layout.group_id, consumer)
        stack.callback(self._kafka_metrics.consumer_lag.forget, consumer)
        windows = Windows()
        self._committer = Committer(writers=writers, windows=windows, group_id=layout.group_id)
        host_slots = HostSlots(
            concurrency=settings.concurrency,
            host_concurrency=settings.host_concurrency,
            backlog=settings.host_backlog,
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_seconds,
            slow_after=min(settings.timeout_seconds / 10, 0.5),
            metrics=self._metrics,
        )
        handler = RecordHandler(
            session=session,
            host_slots=host_slots,
            policy=policy,
            topics=layout,
            instances=self._instances,
            endpoints=endpoints,
            metrics=self._metrics,
            config=HandlerConfig(
                timeout=settings.timeout_seconds,
                retry_after_max=settings.retry_after_max_seconds,
                rotation_grace=settings.signature_rotation_grace_seconds,
                dead_letter_partitions=partitions,
                history=settings.history_retention_hours > 0,
                unknown_instance_grace=self._unknown_instance_grace,
                disable_after=settings.disable_after_hours * 3600 or None,
            ),
        )
        self._reader = DeliveryReader(
            consumer=consumer,
            handler=handler,
            committer=self._committer,
            writers=writers,
            windows=windows,
            topics=layout,
            policy=policy,
            metrics=self._metrics,
            max_pending=settings.max_pending,
            revoke_grace=settings.timeout_seconds + 1.0,
            relieve=host_slots.relieve,
            sending=host_slots.sending,
        )
        consumer.subscribe(pattern=layout.pattern, listener=self._reader.listener)
        # Vital: a process whose deliverer died keeps its partitions, and their webhooks wait.
        self._task = self._watchdog.start(partial(self._run, self._reader, self._committer), name="deliverer")
        logger.info("deliverer started", extra={"role": "deliverer"})

    @staticmethod
    async def _run(reader: DeliveryReader, committer: Committer) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(reader.run(), name="deliverer-read")
            group.create_task(committer.run(), name="deliverer-commit")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        try:
            if self._task is not None:
                await self._task.stop()  # what crashed it, if anything, went to the watchdog
            if self._reader is not None:
                await self._reader.drain(self.drain_grace)
            if self._committer is not None:
                try:
                    async with asyncio.timeout(self.last_commit_grace):
                        await self._committer.commit()
                except (PublishError, TimeoutError) as error:
                    logger.warning(
                        "last commit failed; the next owner repeats what it covered: %s",
                        str(error) or f"no answer within {self.last_commit_grace:g} s",
                    )
        finally:
            await self._stack.aclose()


@asynccontextmanager
async def start_deliverer(
    settings: DeliverySettings,
    *,
    topics: TopicNames,
    admin: TopicAdmin,
    instances: InstanceLookup,
    registry: CollectorRegistry,
    kafka_metrics: KafkaMetrics,
    watchdog: Watchdog,
    revisions: RevisionLookup | None = None,
    unknown_instance_grace: float = 5.0,
) -> AsyncIterator[Deliverer]:
    """Create the delivery topics, join the deliverer group and deliver until the block exits.

    `instances(id)` is the current validated instance or None (deleted, invalid); it is called for
    every event, so a dict's `get` is right. `revisions(id)`, optional, is the stored body's
    `updatedDate`, which lets any PATCH lift an endpoint's disabling (without it, only a change of the
    configuration does). `unknown_instance_grace` is how long an event waits for an instance id
    this replica has not read yet before it is dropped as deleted.
    """
    layout = delivery_topics(settings, topics)
    await ensure_delivery_topics(
        admin,
        layout,
        settings.topic_partitions,
        history_retention_hours=settings.history_retention_hours,
    )
    metrics = DeliveryMetrics(registry, per_instance=settings.metrics_per_instance)
    async with Deliverer(
        settings,
        layout=layout,
        instances=instances,
        metrics=metrics,
        kafka_metrics=kafka_metrics,
        watchdog=watchdog,
        revisions=revisions,
        unknown_instance_grace=unknown_instance_grace,
    ) as deliverer:
        yield deliverer


@asynccontextmanager
async def open_delivery_views(
    settings: DeliverySettings,
    *,
    topics: TopicNames,
    admin: TopicAdmin,
    registry: CollectorRegistry,
    kafka_metrics: KafkaMetrics,
    watchdog: Watchdog,
    revisions: RevisionLookup | None = None,
) -> AsyncIterator[DeliveryViews]:
    """The views of the delivery for a process that serves the API without delivering (role `api`).
    A process that also delivers uses `Deliverer.views`: both register the delivery metrics."""
    layout = delivery_topics(settings, topics)
    await ensure_delivery_topics(
        admin,
        layout,
        settings.topic_partitions,
        history_retention_hours=settings.history_retention_hours,
    )
    metrics = DeliveryMetrics(registry, per_instance=settings.metrics_per_instance)
    async with (
        tail_endpoint_states(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topic=layout.state,
            partitions=settings.topic_partitions,
            metrics=metrics,
            watchdog=watchdog,
            quiet_after=retry_policy(settings).quiet_after,
            revisions=revisions,
        ) as endpoints,
        DeadLetters(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=layout,
            partitions=settings.topic_partitions,
            metrics=metrics,
            kafka_metrics=kafka_metrics,
        ) as dead_letters,
    ):
        yield DeliveryViews(dead_letters, endpoints)
