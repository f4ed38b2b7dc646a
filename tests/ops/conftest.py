"""Fixtures of the operations tests: a consumer group that has stopped consuming."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import consumer_config, ensure_topics
from tests.ops.support import GROUP, produce


@pytest.fixture
def stopped_group(kafka_bootstrap: str, settings: SettingsWrapper) -> str:
    """The `testing` group consumed two messages of partition 0 of a fresh topic, committed, and stopped (left the
    group). Returns the topic."""
    topic = f"testing.lag.{uuid.uuid4().hex[:10]}"
    ensure_topics([topic], partitions=2)
    settings.TESTAPP_EVENTS_TOPIC = topic
    settings.CONSUMER_LAG_STALL_SECONDS = 20
    produce(topic, partition=0, count=2)
    consumer = Consumer(consumer_config(GROUP, **{"enable.auto.commit": False}))
    consumer.subscribe([topic])
    read, deadline = 0, time.monotonic() + 60
    while read < 2:
        assert time.monotonic() < deadline, "the group did not read its two messages"
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            read += 1
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    consumer.close()
    return topic
