"""The relay's check of the broker's memory while part of the cluster cannot answer: only that part waits."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from django.conf import settings
from django.db import OperationalError, transaction

from apps import outbox
from apps.common.kafka import producer_config
from apps.outbox.models import BrokerMark, OutboxEvent
from apps.outbox.relay import OutboxRelay, broker_memory, loop
from apps.outbox.relay.partitions import murmur2, partition_for
from tests.factories import route_calculated
from tests.outbox.support import drain_in_process

TOPIC = "routing.events"


def test_murmur2_is_kafkas() -> None:
    # Kafka's own test vectors (UtilsTest.testMurmur2), as unsigned 32-bit ints.
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF


def test_partition_for_names_the_partition_the_relays_producer_picks(kafka_bootstrap: str) -> None:
    topic = settings.KAFKA_TOPIC_PREFIX + TOPIC
    producer = Producer(producer_config())
    landed: dict[str, int] = {}
    partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    for truck in range(40):
        key = f"truck:{truck}"
        producer.produce(topic, b"{}", key, on_delivery=lambda _e, m, key=key: landed.__setitem__(key, m.partition()))
    assert producer.flush(20) == 0

    assert landed == {key: partition_for(key, partitions) for key in landed}
    assert len(set(landed.values())) > 1


class LeaderlessPartition:
    """broker_memory's reader, with one partition that never answers (its leader is gone)."""

    def __init__(self, config: dict[str, Any], *, dead: tuple[str, int]) -> None:
        self.real = Consumer(config)
        self.dead = dead

    def poll(self, timeout: float) -> Any:
        message = self.real.poll(timeout)
        if message is not None and (message.topic(), message.partition()) == self.dead:
            return None
        return message

    def get_watermark_offsets(self, partition: TopicPartition, **kwargs: Any) -> tuple[int, int]:
        if (partition.topic, partition.partition) == self.dead:
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE, "no leader"))
        return self.real.get_watermark_offsets(partition, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _publish_trucks(count: int) -> None:
    with transaction.atomic():
        for truck in range(1, count + 1):
            outbox.publish(route_calculated(truck_id=truck))


@pytest.mark.django_db(transaction=True)
def test_a_relay_started_while_one_partition_has_no_leader_publishes_every_other_partitions_rows(
    kafka_bootstrap: str,
) -> None:
    _publish_trucks(12)
    drain_in_process()  # the marks of what the broker acknowledged, on several partitions
    topic = settings.KAFKA_TOPIC_PREFIX + TOPIC
    dead = BrokerMark.objects.filter(topic=topic).order_by("partition").values_list("topic", "partition").first()
    assert dead is not None
    _publish_trucks(12)
    relay = OutboxRelay()

    with mock.patch.object(broker_memory, "Consumer", lambda config: LeaderlessPartition(config, dead=dead)):
        relay.setup()
        try:
            for _ in range(3):
                relay.run_once()
        finally:
            relay.teardown()

    count = len(Producer(producer_config()).list_topics(topic, timeout=10).topics[topic].partitions)
    waiting = {row.key for row in OutboxEvent.objects.filter(state="pending")}
    published_later = {row.key for row in OutboxEvent.objects.filter(state="published").order_by("-id")[:12]}
    assert waiting and all(partition_for(key, count) == dead[1] for key in waiting)
    assert published_later and all(partition_for(key, count) != dead[1] for key in published_later - waiting)
    assert len(waiting) + len(published_later - waiting) == 12


def test_after_an_offset_went_backwards_once_later_acks_do_not_force_a_check_each_time() -> None:
    acked = broker_memory.AckedOffsets(mark_interval=60)
    acked.note({("t", 0): [90, 100, "e1"]}, now=0)

    _, reset = acked.note({("t", 0): [3, 5, "e2"]}, now=1)  # another relay re-queued onto an emptied log
    assert reset
    _, again = acked.note({("t", 0): [6, 9, "e3"]}, now=2)  # the new log's offsets from now on
    assert not again


@pytest.mark.django_db(transaction=True)
def test_the_broker_memory_check_counts_as_done_only_once_its_requeue_committed(kafka_bootstrap: str) -> None:
    _publish_trucks(2)
    drain_in_process()
    BrokerMark.objects.update(cluster_id="a-cluster-that-is-gone")  # every mark lost: the window goes again
    relay = OutboxRelay()
    calls = []
    real = loop.outbox_events_requeue_forgotten

    def requeue_failing_once(**kwargs: Any) -> int | None:
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("the database went away mid re-queue")
        return real(**kwargs)

    relay.setup()
    try:
        with mock.patch.object(loop, "outbox_events_requeue_forgotten", requeue_failing_once):
            with pytest.raises(OperationalError):
                relay.run_once()
            relay.run_once()  # the check was not done: it runs again before any claim
    finally:
        relay.teardown()

    assert len(calls) == 2
