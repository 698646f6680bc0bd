"""The instances and checkpoints topics are co-partitioned by instance id, so that whoever owns
a partition owns both an instance's configuration and its checkpoints."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def state_partition(instance_id: str, partitions: int) -> int:
    # The same hash as Kafka's default partitioner, so other clients can find an instance's partition.
    digest: int = murmur2(instance_id.encode())
    return (digest & 0x7FFFFFFF) % partitions
