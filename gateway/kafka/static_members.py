"""Removing a static member from a consumer group (KIP-345), which aiokafka's admin client lacks.

A consumer with a `group_instance_id` does not leave its group when it stops: its partitions wait
for it until its session times out, so that a restart gets them back without a rebalance. A member
that is going away for good asks the coordinator to remove it instead, as Java's
`Admin.removeMembersFromConsumerGroup` does: LeaveGroup v3 or later, naming the member by its
instance id. aiokafka 0.14 only has LeaveGroup v0 and v1 (a member id, no instance id), so v3 is
declared here with aiokafka's own protocol types.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, UnknownMemberIdError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from gateway.errors import PublishError


class _LeaveGroupResponse_v3(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16)
            ),
        ),
    )


class _LeaveGroupRequest_v3(RequestStruct):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class _RemoveStaticMember(Request[_LeaveGroupRequest_v3]):  # type: ignore[misc]
    API_KEY = 13

    def __init__(self, group_id: str, instance_id: str) -> None:
        self._group_id = group_id
        self._instance_id = instance_id

    def build(self, request_struct_class: type[_LeaveGroupRequest_v3]) -> _LeaveGroupRequest_v3:
        # No member id: the coordinator finds the member by its instance id, whatever its member id.
        return request_struct_class(self._group_id, [("", self._instance_id)])


async def remove_static_member(client: AIOKafkaAdminClient, group_id: str, instance_id: str) -> bool:
    """Remove the member `instance_id` from `group_id`; the group rebalances at once. False when it
    was no member (its session had expired already, or it never joined)."""
    try:
        coordinator = await client.find_coordinator(group_id)
        # The admin client sends a request to a chosen broker only through this private helper.
        response = await client._send_request_to_node(coordinator, _RemoveStaticMember(group_id, instance_id))
    except KafkaError as exc:
        raise PublishError(f"cannot remove member {instance_id!r} from group {group_id!r}: {exc}") from exc
    except NotImplementedError as exc:  # what aiokafka raises for a broker without LeaveGroup v3
        raise PublishError(
            f"cannot remove member {instance_id!r} from group {group_id!r}: it needs Kafka 2.4 or later"
        ) from exc
    codes = [response.error_code, *(code for _member, _instance, code in response.members)]
    for code in codes:
        if code == UnknownMemberIdError.errno:
            return False
        if code:
            error = for_code(code)
            raise PublishError(
                f"cannot remove member {instance_id!r} from group {group_id!r}: {error.__name__}"
            )
    return True
