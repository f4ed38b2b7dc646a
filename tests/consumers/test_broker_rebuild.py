"""A broker rebuilt under a backlog of dead letters: offsets start from zero again, the ledger's rows keep naming
the messages they hold, and every new event is applied exactly once (the consumer knows a message by what it is,
never by its place)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import ensure_topics
from apps.consumers.models import DeadLetter
from apps.consumers.replay import deadletter_discard, deadletter_replay
from apps.consumers.runtime import ConsumerWorker
from tests.consumers.support import RawProducer, drain, happened
from tests.consumers.testapp.models import Effect, Script
from tests.support.brokers import Broker, new_broker, restart_empty

pytestmark = pytest.mark.django_db(transaction=True)
Status = DeadLetter.Status


@pytest.fixture
def own_broker(embedded_broker: Broker | None, tmp_path: Path, settings: SettingsWrapper) -> Iterator[Broker]:
    """A broker of this test's own (the session's kind), to rebuild without disturbing the session's."""
    if embedded_broker is None:
        pytest.skip("needs a broker process of its own to rebuild; an external Kafka cannot be")
    broker = new_broker(tmp_path / "rebuilt-broker")
    broker.start()
    settings.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap_servers
    settings.TESTAPP_EVENTS_TOPIC = f"testing.events.{uuid.uuid4().hex[:10]}"
    ensure_topics([settings.TESTAPP_EVENTS_TOPIC], partitions=1)
    yield broker
    broker.stop()


def consume_until(condition: object) -> ConsumerWorker:
    worker = ConsumerWorker("testing", group_id=f"testing-{uuid.uuid4().hex[:10]}")
    worker.setup()
    try:
        drain(worker, condition, timeout=60)  # type: ignore[arg-type]
    finally:
        worker.teardown()
    return worker


def test_a_broker_rebuilt_under_resolved_and_pending_dead_letters_applies_every_new_event_exactly_once(
    own_broker: Broker, settings: SettingsWrapper
) -> None:
    topic = settings.TESTAPP_EVENTS_TOPIC
    Script.objects.create(scenario="refuses", broken=True, non_retryable=True)
    Script.objects.create(scenario="fixable", broken=True, non_retryable=True)
    producer = RawProducer(topic)
    # Before: offsets 0..5 of the one partition. A pending head with a message parked behind it, one dead letter
    # replayed and one discarded later, an applied event, and a foreign message without an event id.
    before = [
        happened(key="a", scenario="refuses", seq=1), happened(key="a", seq=2),
        happened(key="b", scenario="fixable", seq=3), happened(key="c", scenario="refuses", seq=4),
        happened(key="d", seq=5),
    ]
    before_ids = [producer.event(event) for event in before]
    producer.send(value=b"not an event", key="e", headers=[("x-source", b"legacy")])
    producer.flush()
    consume_until(lambda: DeadLetter.objects.count() == 5 and Effect.objects.filter(seq=5).exists())
    rows = {row.offset: row for row in DeadLetter.objects.all()}
    assert sorted(rows) == [0, 1, 2, 3, 5]
    Script.objects.filter(scenario="fixable").update(broken=False)
    deadletter_replay(dead_letter_id=rows[2].pk)
    deadletter_discard(dead_letter_id=rows[3].pk, actor=None, reason="cancelled by the customer")
    backlog = dict(DeadLetter.objects.values_list("offset", "status"))
    assert backlog == {0: Status.PENDING, 1: Status.PENDING, 2: Status.REPLAYED, 3: Status.DISCARDED, 5: Status.PENDING}

    restart_empty(own_broker)  # no topics, no messages, no committed offsets: offsets start from zero again
    ensure_topics([topic], partitions=1)
    producer = RawProducer(topic)
    # After: new events take the old offsets 0..7 (one of them on key a, which still waits behind its head), then
    # the relay's amnesia re-publish sends the old events again, and the foreign producer its message.
    new = [happened(key=f"new-{seq}", seq=100 + seq) for seq in range(7)] + [happened(key="a", seq=107)]
    new_ids = [producer.event(event) for event in new]
    for event, event_id in zip(before, before_ids, strict=True):
        producer.event(event, event_id=event_id)
    producer.send(value=b"not an event", key="e", headers=[("x-source", b"legacy")])
    last = producer.event(happened(key="last", seq=200))
    producer.flush()
    worker = consume_until(lambda: Effect.objects.filter(event_id=last).exists())

    assert sorted(Effect.objects.filter(event_id__in=new_ids).values_list("seq", flat=True)) == list(range(100, 107))
    # Each message the ledger held is still one row with its fate; the new event on key a is parked behind a's head.
    after = {(row.event_id, row.offset): (row.status, row.blocked_by_id) for row in DeadLetter.objects.all()}
    assert after == {
        (before_ids[0], 0): (Status.PENDING, None), (before_ids[1], 1): (Status.PENDING, rows[0].pk),
        (before_ids[2], 2): (Status.REPLAYED, None), (before_ids[3], 3): (Status.DISCARDED, None),
        (None, 5): (Status.PENDING, None), (new_ids[7], 7): (Status.PENDING, rows[0].pk),
    }
    assert (worker.counters.in_ledger, worker.counters.duplicates, worker.counters.parked) == (4, 2, 1)

    Script.objects.filter(scenario="refuses").update(broken=False)
    deadletter_replay(dead_letter_id=rows[0].pk)  # the head, then what waited behind it, in order
    assert list(Effect.objects.filter(key="a").values_list("seq", flat=True)) == [1, 2, 107]
    applied = list(Effect.objects.filter(event_id__in=new_ids).values_list("event_id", flat=True))
    assert sorted(applied) == sorted(new_ids)  # every new event, exactly once
    assert not Effect.objects.filter(event_id=before_ids[3]).exists()  # the discarded one never ran


@pytest.mark.django_db(transaction=True)
def test_after_a_replaced_cluster_the_next_consumer_reads_from_the_beginning_and_commits_nothing_on_leaving(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    """The new cluster's committed offsets may be the old log's (the consumer that had not noticed yet commits its
    stored offsets into the new group), beyond messages the new log holds: starting there would skip them."""
    for seq in range(3):
        producer.event(happened(key=f"k{seq}", seq=seq))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: worker.counters.handled == 3)
    worker.teardown()  # leaves the group, its offsets committed: a plain restart would resume after them

    worker._cluster_replaced = True  # as `_check_cluster` finds on a new cluster id (the GroupStalled it raises)
    worker.setup()
    drain(worker, lambda: worker.counters.duplicates == 3)

    assert worker.counters.handled == 3  # read again from the beginning, applied once (the inbox)
