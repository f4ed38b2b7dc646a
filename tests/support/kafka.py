"""Test helpers that read what really reached the broker."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from apps.common.kafka import client_config


LEADER_PENDING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]


class TopicTail:
    """Reads the messages a topic receives after the tail was opened (no consumer group, no join delay).

    `from_beginning=True` reads what the topic already holds too (e.g. a broker started by the test).
    """

    def __init__(self, topic: str, *, from_beginning: bool = False) -> None:
        self.topic = topic
        self.consumer = Consumer(client_config(**{"group.id": "test-tail", "enable.auto.commit": False}))
        metadata = self.consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        assignment = []
        for partition in partitions:
            low, high = self._watermarks(TopicPartition(topic, partition))
            start = low if from_beginning else high
            assignment.append(TopicPartition(topic, partition, start if start >= 0 else OFFSET_END))
        self.consumer.assign(assignment)

    def _watermarks(self, partition: TopicPartition, *, timeout: float = 10.0) -> tuple[int, int]:
        # Apache Kafka: a partition created a moment ago answers NOT_LEADER_FOR_PARTITION until its leader is known.
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.consumer.get_watermark_offsets(partition, timeout=timeout)
            except KafkaException as error:
                if error.args[0].code() not in LEADER_PENDING or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def read(self, count: int, *, timeout: float = 20.0) -> list[Received]:
        """Return at least `count` messages, or whatever arrived before `timeout`."""
        received: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            for message in self.consumer.consume(num_messages=1000, timeout=0.2):
                if message.error():
                    continue
                received.append(
                    Received(
                        topic=message.topic(),
                        partition=message.partition(),
                        offset=message.offset(),
                        key=message.key().decode() if message.key() is not None else None,
                        value=message.value(),
                        headers={k: v.decode() for k, v in (message.headers() or [])},
                    )
                )
        return received

    def close(self) -> None:
        self.consumer.close()
