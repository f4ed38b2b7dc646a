"""A wedged group (members polling, no partitions assigned, lag standing) is noticed and rejoined."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.db import connection
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import consumer_config
from apps.common.models import Heartbeat
from apps.common.workers import Backoff, run_worker
from apps.consumers.runtime import ConsumerWorker
from apps.consumers.watchdog import GroupStalled, OwnedIdleWatch, Position, UnownedLagWatch
from tests.consumers.support import RawProducer, happened
from tests.consumers.testapp.models import Effect
from tests.support.metrics import value


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_stalls_once_it_stood_lagging_and_unowned_for_the_threshold() -> None:
    clock = Clock()
    watch = UnownedLagWatch(threshold_s=60, clock=clock)
    standing = [Position("t", 0, committed=5, high=9), Position("t", 1, committed=3, high=3)]

    assert watch.observe(standing, owned=set()) == []
    clock.now += 59
    assert watch.observe(standing, owned=set()) == []
    clock.now += 1
    stalls = watch.observe(standing, owned=set())

    assert [(s.topic, s.partition, s.lag, s.seconds) for s in stalls] == [("t", 0, 4, 60)]  # partition 1 caught up


def test_progress_or_an_owner_starts_the_clock_again() -> None:
    clock = Clock()
    watch = UnownedLagWatch(threshold_s=60, clock=clock)
    watch.observe([Position("t", 0, committed=5, high=9)], owned=set())
    clock.now += 50
    watch.observe([Position("t", 0, committed=6, high=9)], owned=set())  # someone committed: it moves
    clock.now += 50
    assert watch.observe([Position("t", 0, committed=6, high=9)], owned=set()) == []
    watch.observe([Position("t", 0, committed=6, high=9)], owned={("t", 0)})  # an owner showed up
    clock.now += 59
    assert watch.observe([Position("t", 0, committed=6, high=9)], owned=set()) == []


def test_an_owned_partition_stalls_once_it_lagged_and_fed_nothing_for_the_threshold() -> None:
    clock = Clock()
    watch = OwnedIdleWatch(threshold_s=60, clock=clock)
    mine = [Position("t", 0, committed=5, high=9), Position("t", 1, committed=3, high=8)]

    assert watch.observe(mine) == []
    clock.now += 30
    watch.fed([("t", 1)])  # partition 1 still gives messages: busy, not stuck
    clock.now += 30
    stalls = watch.observe(mine)

    assert [(s.topic, s.partition, s.lag, s.seconds) for s in stalls] == [("t", 0, 4, 60)]
    assert str(stalls[0]) == "t[0] lag 4 assigned here, nothing fetched for 60s"


def test_a_caught_up_owned_partition_starts_the_clock_again() -> None:
    clock = Clock()
    watch = OwnedIdleWatch(threshold_s=60, clock=clock)
    watch.observe([Position("t", 0, committed=5, high=9)])
    clock.now += 50
    watch.observe([Position("t", 0, committed=9, high=9)])  # caught up: nothing to feed
    clock.now += 50
    assert watch.observe([Position("t", 0, committed=9, high=12)]) == []


class WedgedConsumer:
    """A member that polls and is never given partitions: what chaos runs saw after a broker pause cut a
    rebalance short (SyncGroup timed out in flight). Reads of offsets and watermarks still reach the broker."""

    def __init__(self, group_id: str) -> None:
        self.real = Consumer(consumer_config(group_id))  # never subscribes, so never joins

    def consume(self, num_messages: int, timeout: float) -> list:
        time.sleep(min(timeout, 0.05))
        return []

    def assignment(self) -> list:
        return []

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


@pytest.fixture
def backlog(producer: RawProducer, settings: SettingsWrapper) -> RawProducer:
    settings.CONSUMER_LAG_INTERVAL_S = 0
    settings.CONSUMER_UNOWNED_LAG_RESTART_S = 1.0
    settings.CONSUMER_REJOIN_JITTER_S = 0.5
    for seq in range(3):
        producer.event(happened(key=f"k{seq}", seq=seq))
    producer.flush()
    return producer


class DeafConsumer(WedgedConsumer):
    """A member that holds its partition and is fed nothing from it: what a chaos run saw after the broker was
    replaced by an empty one and a node then killed (the member's fetch state never recovered)."""

    def __init__(self, group_id: str, topic: str) -> None:
        super().__init__(group_id)
        partitions = self.real.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]

    def assignment(self) -> list:
        return self.partitions


class ReplacedCluster(WedgedConsumer):
    """A member whose broker was replaced by an empty cluster on the same address (a new cluster id): chaos runs
    saw both members of a group lose their partitions right after and never get them back."""

    def __init__(self, group_id: str) -> None:
        super().__init__(group_id)
        self.replaced = False

    def list_topics(self, *args: object, **kwargs: object) -> object:
        metadata = self.real.list_topics(*args, **kwargs)
        if self.replaced:
            metadata.cluster_id = "a-new-cluster"
        return metadata


@pytest.fixture
def wedged() -> Iterator[ConsumerWorker]:
    worker = ConsumerWorker("testing", group_id=f"testing-{uuid.uuid4().hex[:10]}")
    worker.consumer = WedgedConsumer(worker.group_id)  # type: ignore[assignment]
    yield worker
    worker.consumer.real.close()  # type: ignore[union-attr]


def run_for(worker: ConsumerWorker, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.run_once()


@pytest.mark.django_db(transaction=True)
def test_a_member_without_partitions_while_the_lag_stands_leaves_to_rejoin(
    backlog: RawProducer, wedged: ConsumerWorker
) -> None:
    wedged.run_once()  # the clock starts: not yet a stall

    with pytest.raises(GroupStalled, match=rf"{backlog.topic}\[0\] lag \d+ unowned for \d+s"):
        run_for(wedged, 10)


@pytest.mark.django_db(transaction=True)
def test_a_member_fed_nothing_from_its_own_lagging_partition_leaves_to_rejoin(backlog: RawProducer) -> None:
    worker = ConsumerWorker("testing", group_id=f"testing-{uuid.uuid4().hex[:10]}")
    worker.consumer = DeafConsumer(worker.group_id, backlog.topic)  # type: ignore[assignment]
    try:
        worker.run_once()  # the clock starts: not yet a stall
        with pytest.raises(GroupStalled, match=rf"{backlog.topic}\[\d+\] lag \d+ assigned here, nothing fetched for"):
            run_for(worker, 10)
    finally:
        worker.consumer.real.close()  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
def test_a_member_whose_cluster_was_replaced_rejoins_at_its_next_check(settings: SettingsWrapper) -> None:
    settings.CONSUMER_LAG_INTERVAL_S = 0
    worker = ConsumerWorker("testing", group_id=f"testing-{uuid.uuid4().hex[:10]}")
    worker.consumer = ReplacedCluster(worker.group_id)  # type: ignore[assignment]
    try:
        worker.run_once()  # the cluster it joined
        worker.consumer.replaced = True  # type: ignore[union-attr]
        with pytest.raises(GroupStalled, match="cluster id .* became a-new-cluster"):
            worker.run_once()  # at once, not after CONSUMER_UNOWNED_LAG_RESTART_S
    finally:
        worker.consumer.real.close()  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
def test_partitions_a_live_consumer_reports_are_not_a_stall(backlog: RawProducer, wedged: ConsumerWorker) -> None:
    Heartbeat.objects.create(
        kind=Heartbeat.Kind.CONSUMER, group="testing", host="elsewhere", pid=1, started_at=timezone.now(),
        beat_at=timezone.now(), partitions=[{"topic": backlog.topic, "partition": 0, "lag": 3}],
    )

    run_for(wedged, 2.5)  # more than twice the threshold: no GroupStalled


@pytest.mark.django_db(transaction=True)
def test_the_wedged_worker_rejoins_after_a_random_pause_and_drains_the_backlog(
    backlog: RawProducer, caplog: pytest.LogCaptureFixture
) -> None:
    rejoins = value("logiflow_consumer_rejoins_total", group="testing")

    class FirstJoinWedged(ConsumerWorker):
        setups = 0

        def setup(self) -> None:
            super().setup()
            FirstJoinWedged.setups += 1
            if FirstJoinWedged.setups == 1:
                self.consumer.close()  # type: ignore[union-attr]
                self.consumer = WedgedConsumer(self.group_id)  # type: ignore[assignment]

    def run() -> None:
        try:
            run_worker(worker, install_signals=False, backoff=Backoff(initial=0.1))
        finally:
            connection.close()

    worker = FirstJoinWedged("testing", group_id=f"testing-{uuid.uuid4().hex[:10]}")
    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while Effect.objects.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
        thread.join(30)

    assert sorted(Effect.objects.values_list("seq", flat=True)) == [0, 1, 2]
    assert FirstJoinWedged.setups == 2
    pauses = [r.getMessage() for r in caplog.records if "staying out of the group" in r.getMessage()]
    assert len(pauses) == 1 and re.search(r"group 0\.[0-5]s before", pauses[0]), pauses
    assert value("logiflow_consumer_rejoins_total", group="testing") == rejoins + 1
