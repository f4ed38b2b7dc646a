"""Helpers for the consumer-lag tests: a consumer group that committed and stopped, messages that arrive after,
and samples taken at a chosen time."""

from __future__ import annotations

import time
from datetime import datetime

from apps.ops.selectors import GroupLag, consumer_lag
from apps.ops.services import consumer_lag_sample
from tests.consumers.support import RawProducer, happened

GROUP = "testing"  # the test app's consumer group (tests/consumers/testapp); its topic is made fresh per test


def produce(topic: str, *, partition: int, count: int) -> None:
    producer = RawProducer(topic)
    for seq in range(count):
        producer.event(happened(seq=seq), partition=partition)
        producer.flush()  # a record batch each: Tansu's high watermark counts a batch as its first offset


def sample_until(lag: int, *, now: datetime) -> GroupLag:
    """Sample at `now` until the group's lag reads `lag`: a broker's high watermark may trail a flushed produce
    for a moment. Every sample carries the same timestamp, so repeating one changes no clock."""
    deadline = time.monotonic() + 10
    while True:
        consumer_lag_sample(now=now)
        group = next(g for g in consumer_lag() if g.group == GROUP)
        if group.lag == lag or time.monotonic() > deadline:
            return group
