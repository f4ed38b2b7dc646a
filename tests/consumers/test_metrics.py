"""A consumer's metrics: messages per outcome, handler time, lag per partition, and its heartbeat."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.common.models import Heartbeat
from apps.consumers.runtime import ConsumerWorker
from tests.consumers.support import RawProducer, drain, happened
from tests.support.metrics import value


@pytest.mark.django_db(transaction=True)
def test_consumer_counts_outcomes_per_group_and_reports_lag_per_partition(
    make_worker: Callable[..., ConsumerWorker], producer: RawProducer, testing_topic: str,
) -> None:
    handled_before = value("logiflow_consumer_messages_total", group="testing", outcome="handled")
    duplicate_before = value("logiflow_consumer_messages_total", group="testing", outcome="duplicate")
    handler_runs_before = value("logiflow_consumer_handler_duration_seconds_count", group="testing")
    first = producer.event(happened(key="a", seq=1))
    producer.event(happened(key="b", seq=2))
    producer.event(happened(key="a", seq=3), event_id=first)  # the same event again: a duplicate
    producer.flush()
    worker = make_worker("testing")

    drain(worker, lambda: worker.counters.handled + worker.counters.duplicates == 3)
    worker.consumer.commit(asynchronous=False)
    worker.sample_lag()
    worker.heartbeat.beat(partitions=worker.partitions, force=True)

    assert value("logiflow_consumer_messages_total", group="testing", outcome="handled") - handled_before == 2
    assert value("logiflow_consumer_messages_total", group="testing", outcome="duplicate") - duplicate_before == 1
    assert value("logiflow_consumer_handler_duration_seconds_count", group="testing") - handler_runs_before == 3
    assert value("logiflow_consumer_lag", group="testing", topic=testing_topic, partition="0") == 0
    assert {p["partition"] for p in worker.partitions} == {0, 1}
    beat = Heartbeat.objects.get(kind="consumer", group="testing")
    # (Tansu's high watermark may lag the last offset, so the lag is asserted, not the watermark.)
    assert [(p["topic"], p["partition"], p["lag"]) for p in beat.partitions] == [(testing_topic, 0, 0), (testing_topic, 1, 0)]
    assert beat.last_batch_at is not None


@pytest.mark.django_db(transaction=True)
def test_consumer_lag_is_high_watermark_minus_committed_offset(
    make_worker: Callable[..., ConsumerWorker], producer: RawProducer, testing_topic: str,
) -> None:
    worker = make_worker("testing")
    drain(worker, lambda: bool(worker.consumer.assignment()))  # joined the group, nothing read yet
    for seq in range(4):
        producer.event(happened(key="k", seq=seq), partition=1)
        producer.flush()  # one record batch each: Tansu's high watermark counts a batch as its first offset

    worker.sample_lag()

    assert value("logiflow_consumer_lag", group="testing", topic=testing_topic, partition="1") == 4
