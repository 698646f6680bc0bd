"""Instances live in a compacted topic keyed by id, their secrets encrypted. Every replica tails it
(a `CompactedTopicTable`); this module adds the encryption and the read-your-writes put."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.errors import PublishError, SecretKeyMismatch
from gateway.instances.secrets import SecretBox
from gateway.kafka.compacted import CompactedTopicTable
from gateway.kafka.partitioning import state_partition
from gateway.tasks import Watchdog

Body = dict[str, Any]
_APPLY_TIMEOUT_SECONDS = 30.0
BodyListener = Callable[[str, Body | None], Awaitable[None]]


def decode_body(box: SecretBox, instance_id: str, value: bytes) -> Body:
    """A stored instance body with its secrets decrypted; a SecretKeyMismatch names the instance."""
    try:
        return box.decrypt_body(orjson.loads(value))
    except SecretKeyMismatch as exc:
        raise SecretKeyMismatch(f"instance {instance_id}: {exc}") from exc


class InstanceLog:
    """Writes instance bodies and hands every change, decrypted, to `listener` (deletes as None)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        box: SecretBox,
        listener: BodyListener,
        watchdog: Watchdog,
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._box = box
        self._listener = listener
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="event-gateway-instances",
            enable_idempotence=True,
            acks="all",
        )
        self._table = CompactedTopicTable(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            partitions=partitions,
            listener=self._on_record,
            watchdog=watchdog,
        )

    async def __aenter__(self) -> InstanceLog:
        await self._producer.start()
        try:
            await self._table.__aenter__()
        except BaseException:
            await self._producer.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._table.__aexit__(exc_type, exc, tb)
        finally:
            await self._producer.stop()

    def get(self, instance_id: str) -> Body | None:
        stored = self._table.table.get(instance_id)
        return None if stored is None else decode_body(self._box, instance_id, stored)

    def ids(self) -> list[str]:
        return sorted(self._table.table)

    async def put(self, instance_id: str, body: Body) -> None:
        """Store the body and return once this replica has applied it (read-your-writes)."""
        await self._write(instance_id, orjson.dumps(self._box.encrypt_body(body)))

    async def reencrypt(self) -> list[str]:
        """Rewrite with the current key every stored body that holds a secret in plaintext or encrypted
        with a previous key; the ids rewritten. Each body is read just before it is written, but a PATCH
        landing in between is lost: run it while instances are not being edited."""
        rewritten = []
        for instance_id in self.ids():
            stored = self._table.table.get(instance_id)
            if stored is not None and not self._box.is_current(orjson.loads(stored)):
                await self.put(instance_id, decode_body(self._box, instance_id, stored))
                rewritten.append(instance_id)
        return rewritten

    async def delete(self, instance_id: str) -> None:
        await self._write(instance_id, None)

    async def _write(self, instance_id: str, value: bytes | None) -> None:
        partition = state_partition(instance_id, self._partitions)
        try:
            metadata = await self._producer.send_and_wait(
                self._topic, key=instance_id.encode(), value=value, partition=partition
            )
        except KafkaError as exc:
            raise PublishError(f"cannot store instance {instance_id}: {exc}") from exc
        async with asyncio.timeout(_APPLY_TIMEOUT_SECONDS):
            await self._table.wait_until(partition, metadata.offset)

    async def _on_record(self, key: str, value: bytes | None) -> None:
        await self._listener(key, None if value is None else decode_body(self._box, key, value))
