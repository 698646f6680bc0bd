"""Topic names and on-demand topic creation."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from gateway.errors import PublishError
from gateway.kafka.static_members import remove_static_member

_COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Event topics are `<prefix>.<hub>.<objectType>`; the gateway's own state lives beside them."""

    prefix: str = "events"
    state_prefix: str = "gateway"

    def events(self, hub: str, object_type: str) -> str:
        return f"{self.prefix}.{hub}.{object_type}"

    @property
    def instances(self) -> str:
        return f"{self.state_prefix}.instances"

    @property
    def checkpoints(self) -> str:
        return f"{self.state_prefix}.checkpoints"

    @property
    def row_state(self) -> str:
        """Each row's last published state, co-partitioned with the checkpoints (polling/row_state.py)."""
        return f"{self.state_prefix}.row-state"


@dataclass(frozen=True, slots=True)
class GroupMember:
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    state: str
    members: tuple[GroupMember, ...]


class TopicAdmin:
    """Creates topics once each; remembers which exist so the hot path costs a set lookup."""

    def __init__(self, *, bootstrap_servers: str, replication_factor: int) -> None:
        self._client = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, client_id="event-gateway-admin"
        )
        self._replication_factor = replication_factor
        self._known: set[str] = set()

    async def __aenter__(self) -> TopicAdmin:
        await self._client.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()

    async def describe_group(self, group_id: str) -> GroupDescription:
        """The members of a consumer group and the partitions each is assigned."""
        try:
            (response,) = await self._client.describe_consumer_groups([group_id])
        except KafkaError as exc:
            raise PublishError(f"cannot describe group {group_id!r}: {exc}") from exc
        (_error, _group, state, _protocol_type, _protocol, members) = response.groups[0][:6]
        described = []
        for _member_id, client_id, host, _metadata, raw_assignment in members:
            assignment = ConsumerProtocolMemberAssignment.decode(raw_assignment) if raw_assignment else None
            partitions = tuple(
                (topic, partition)
                for topic, numbers in (assignment.assignment if assignment else [])
                for partition in numbers
            )
            described.append(
                GroupMember(client_id=client_id, host=host, partitions=tuple(sorted(partitions)))
            )
        return GroupDescription(state=state, members=tuple(sorted(described, key=lambda m: m.client_id)))

    async def max_message_bytes(self, topic: str) -> int | None:
        """The topic's `max.message.bytes`, the largest batch its brokers take; None if they do not say.
        Asked only to explain a refusal, so that no poll pays for it."""
        wanted = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})
        try:
            responses = await self._client.describe_configs([wanted])
        except KafkaError:
            return None
        for response in responses:
            for _code, _message, _type, _name, entries, *_rest in response.resources:
                for name, value, *_flags in entries:
                    if name == "max.message.bytes" and value is not None:
                        return int(value)
        return None

    async def remove_static_member(self, group_id: str, instance_id: str) -> bool:
        """Make the static member `instance_id` leave `group_id` now (False: it was no member)."""
        return await remove_static_member(self._client, group_id, instance_id)

    async def ensure(
        self, name: str, *, partitions: int, compacted: bool = False, retention_ms: int | None = None
    ) -> None:
        """Create the topic unless it exists. `retention_ms` also deletes what is older, compacted or not."""
        if name in self._known:
            return
        if name not in await self._client.list_topics():
            configs = dict(_COMPACTED) if compacted else {}
            if retention_ms is not None:
                configs["retention.ms"] = str(retention_ms)
                if compacted:
                    configs["cleanup.policy"] = "compact,delete"
            topic = NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=self._replication_factor,
                topic_configs=configs,
            )
            try:
                response = await self._client.create_topics([topic])
            except KafkaError as exc:
                raise PublishError(f"cannot create topic {name!r}: {exc}") from exc
            for _topic, code, message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise PublishError(f"cannot create topic {name!r}: error {code} {message or ''}".strip())
        self._known.add(name)
