"""Where a consumer group stands on its partitions, read from the broker: each partition's committed offset and
watermarks, for the worker's lag sample and its ownership watch (apps.consumers.watchdog), and for anyone
measuring a group's lag from outside it (`outside_positions`)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from apps.common.kafka import consumer_config, kafka_topic
from apps.consumers.watchdog import Position


def group_positions(
    consumer: Consumer, topics: list[str], *, excluding: set[tuple[str, int]], timeout: float
) -> list[Position]:
    """The group's committed offset and the high watermark of every partition of its topics not in
    `excluding` (normally none: every partition has an owner)."""
    candidates = []
    for topic in map(kafka_topic, topics):
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            continue
        candidates += [TopicPartition(topic, p) for p in sorted(metadata.partitions) if (topic, p) not in excluding]
    return [position for _, position in read_positions(consumer, candidates, deadline=time.monotonic() + timeout)]


def outside_positions(group_id: str, topics: list[str], *, timeout: float) -> list[Position]:
    """Where `group_id` stands on every partition of `topics`, read by a client that is not a member: it asks
    the group's coordinator for the committed offsets and never joins (no subscribe, no commit), so the members
    see no rebalance and a stopped, dead or wedged group is measured all the same."""
    reader = Consumer(consumer_config(group_id, principal="monitor", **{
        "client.id": f"logiflow-lag-{group_id}", "enable.auto.commit": False, "log_level": 0,
        "socket.timeout.ms": max(1000, int(timeout * 1000)),
    }))
    try:
        return group_positions(reader, topics, excluding=set(), timeout=timeout)
    finally:
        reader.close()


def read_positions(
    consumer: Consumer, partitions: list[TopicPartition], *, deadline: float
) -> list[tuple[TopicPartition, Position]]:
    """Each partition's committed offset as the group stored it, with its Position (the committed offset, or
    the low watermark when none is, and the high watermark): a broker round trip per partition, all before
    `deadline` (monotonic), else KafkaException."""
    stored = consumer.committed(partitions, timeout=deadline - time.monotonic()) if partitions else []
    positions = []
    for partition in stored:
        left = deadline - time.monotonic()
        if left <= 0:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "offsets not read within their budget"))
        low, high = consumer.get_watermark_offsets(partition, timeout=left, cached=False)
        start = partition.offset if partition.offset >= 0 else low
        positions.append((partition, Position(partition.topic, partition.partition, start, high)))
    return positions
