"""The consumer runtime against a real broker and database: inbox, retries, dead letters, per-aggregate parking."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.kafka import client_config
from apps.consumers.models import DeadLetter, InboxEntry
from apps.consumers.replay import (
    deadletter_discard,
    deadletter_edit_and_replay,
    deadletter_replay,
    deadletter_retry_due,
)
from apps.consumers.runtime import ConsumerWorker
from tests.consumers.factories import dead_letter
from tests.consumers.support import RawProducer, cloud_event_headers, drain, happened
from tests.consumers.testapp import handlers
from tests.consumers.testapp.models import Effect, Script

pytestmark = pytest.mark.django_db(transaction=True)
Reason = DeadLetter.Reason


def effects(**filters: object) -> list[int]:
    return list(Effect.objects.filter(**filters).values_list("seq", flat=True))


def test_each_permanent_failure_kind_is_dead_lettered_once_and_the_next_event_on_the_partition_is_handled(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="refuses", broken=True, non_retryable=True)
    valid = happened(key="bad", seq=0)
    good_headers = cloud_event_headers(valid)
    without_id = [(name, value) for name, value in good_headers if name != "ce_id"]
    v99 = cloud_event_headers(valid, ce_type="logiflow.testing.Happened.v99")
    broken = {
        Reason.NOT_JSON: (b"{not json", good_headers),
        Reason.MISSING_HEADERS: (valid.model_dump_json().encode(), without_id),
        Reason.UNKNOWN_TYPE: (valid.model_dump_json().encode(), v99),
        Reason.INVALID_PAYLOAD: (b'{"key": "bad", "seq": -1}', cloud_event_headers(valid)),
    }
    # Every broken message is followed on the same partition by a valid event of another key.
    for seq, (reason, (value, headers)) in enumerate(broken.items(), start=1):
        producer.send(value=value, key=f"bad-{reason}", headers=headers)
        producer.event(happened(key=f"good-{seq}", seq=seq))
    producer.event(happened(key="refused", scenario="refuses", seq=90))
    producer.event(happened(key="good-last", seq=99))
    producer.flush()

    worker = make_worker()
    drain(worker, lambda: Effect.objects.filter(seq=99).exists())

    assert sorted(effects()) == [1, 2, 3, 4, 99]
    for reason in broken:
        row = DeadLetter.objects.get(key=f"bad-{reason}".encode())
        assert (row.reason, row.attempts, row.status, row.group) == (reason, 1, DeadLetter.Status.PENDING, "testing")
    refused = DeadLetter.objects.get(key=b"refused")
    assert (refused.reason, refused.attempts) == (Reason.NON_RETRYABLE, 1)
    assert handlers.attempts[refused.event_id] == 1, "a non-retryable failure must not be retried"
    assert DeadLetter.objects.count() == 5
    assert worker.counters.dead_lettered == 5


def test_dead_letter_keeps_the_raw_message_and_its_headers(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    producer.send(value=b"\xff\x00 not json", key="raw", headers=[("ce_id", b"x"), ("binary", b"\xff\xfe")])
    producer.event(happened(key="after", seq=1))
    producer.flush()
    drain(make_worker(), lambda: Effect.objects.exists())

    row = DeadLetter.objects.get()
    assert bytes(row.value) == b"\xff\x00 not json"
    assert row.header_pairs() == [("ce_id", b"x"), ("binary", b"\xff\xfe")]
    assert row.reason == Reason.MISSING_HEADERS
    assert (row.topic, row.partition, row.offset) == (producer.topic, 0, 0)


def test_event_type_the_group_does_not_handle_is_skipped_and_counted_not_dead_lettered(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    other = cloud_event_headers(happened(), ce_type="logiflow.testing.SomethingElse.v1")
    producer.send(value=b"{}", key="k", headers=other)
    producer.event(happened(seq=1))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: Effect.objects.exists())
    assert worker.counters.skipped == 1
    assert not DeadLetter.objects.exists()


def test_handler_failing_twice_then_succeeding_is_handled_once_without_a_ledger_row(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="flaky", fail_times=2)
    event_id = producer.event(happened(scenario="flaky", seq=1))
    producer.event(happened(key="k2", seq=2))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: Effect.objects.count() == 2)

    assert handlers.attempts[event_id] == 3
    assert effects(event_id=event_id) == [1]
    assert not DeadLetter.objects.exists()
    assert worker.counters.retries == 2
    # The failed attempts' on_commit callbacks were discarded with their savepoints.
    assert handlers.committed_callbacks.count(event_id) == 1


def test_always_failing_handler_is_dead_lettered_after_max_attempts_and_later_events_of_its_key_are_parked(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker], settings: object
) -> None:
    Script.objects.create(scenario="broken", broken=True)
    failing_id = producer.event(happened(key="truck-1", scenario="broken", seq=1))
    producer.event(happened(key="truck-1", seq=2))  # same key: must wait behind seq 1
    producer.event(happened(key="truck-2", seq=3))  # other key: flows
    producer.event(happened(key="truck-1", seq=4))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: Effect.objects.exists() and DeadLetter.objects.count() == 3)

    head = DeadLetter.objects.get(event_id=failing_id)
    assert handlers.attempts[failing_id] == settings.CONSUMER_MAX_ATTEMPTS  # type: ignore[attr-defined]
    assert (head.reason, head.attempts, head.blocked_by) == (Reason.HANDLER_ERROR, 3, None)
    assert head.exception_class == "builtins.RuntimeError"
    assert head.handler == "tests.consumers.testapp.handlers.record_effect"
    assert "scenario broken is broken for key truck-1" in head.traceback
    parked = DeadLetter.objects.filter(blocked_by=head).order_by("id")
    assert [(p.reason, p.attempts) for p in parked] == [(Reason.PARKED, 0), (Reason.PARKED, 0)]
    assert effects() == [3]
    assert worker.counters.parked == 2


def test_parked_key_stays_parked_in_later_batches(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="broken", broken=True, non_retryable=True)
    producer.event(happened(key="truck-1", scenario="broken", seq=1))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: DeadLetter.objects.exists())
    producer.event(happened(key="truck-1", seq=2))
    producer.event(happened(key="truck-9", seq=3))
    producer.flush()
    drain(worker, lambda: Effect.objects.exists() and DeadLetter.objects.count() == 2)
    head = DeadLetter.objects.get(blocked_by=None)
    assert DeadLetter.objects.get(blocked_by=head).reason == Reason.PARKED
    assert effects() == [3]


def test_a_dead_letter_an_older_release_wrote_without_a_scope_still_holds_its_aggregate_once_a_consumer_starts(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    """Rolling deploy: the ledger's rows from before scopes (or from an older consumer still running) have no
    scope; a consumer of this release gives them theirs when it starts, so their later messages still park."""
    Script.objects.create(scenario="broken", broken=True, non_retryable=True)
    head = dead_letter(500, key="truck-1")  # an offset the topic does not reach: not taken for a redelivery
    DeadLetter.objects.update(scope=None)
    producer.event(happened(key="truck-1", seq=2))
    producer.event(happened(key="truck-9", seq=3))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: Effect.objects.exists() and DeadLetter.objects.count() == 2)
    head.refresh_from_db()
    assert (head.scope_bytes(), DeadLetter.objects.get(blocked_by=head).reason) == (b"truck-1", Reason.PARKED)
    assert effects() == [3]


def test_duplicate_delivery_of_one_event_id_has_one_effect(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    event_id = uuid.uuid4()
    for _ in range(2):
        producer.event(happened(seq=1), event_id=event_id)
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: worker.counters.handled + worker.counters.duplicates == 2)
    producer.event(happened(seq=1), event_id=event_id)  # and once more in a later batch
    producer.flush()
    drain(worker, lambda: worker.counters.duplicates == 2)

    assert effects(event_id=event_id) == [1]
    assert InboxEntry.objects.filter(group="testing", event_id=event_id).count() == 1


def test_failure_in_the_middle_of_a_batch_keeps_the_order_of_the_rest(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="flaky", fail_times=1)
    for seq in range(1, 11):
        producer.event(happened(key=f"k{seq}", scenario="flaky" if seq == 5 else "", seq=seq))
    producer.flush()
    worker = make_worker(batch_size=100)
    drain(worker, lambda: Effect.objects.count() == 10)
    assert effects() == list(range(1, 11))
    assert len(handlers.committed_callbacks) == 10


# --- the batch fast path (the `testing-batch` group has a batch handler) ------------------------------------


def committed_offset(worker: ConsumerWorker, topic: str, partition: int = 0) -> int:
    """The offset the worker's Kafka group committed for the partition (after `teardown` committed it)."""
    consumer = Consumer(client_config(**{"group.id": worker.group_id, "enable.auto.commit": False}))
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()


def test_a_run_of_new_events_goes_to_the_batch_handler_once_each_in_order_with_one_inbox_row_each(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    event_ids = [producer.event(happened(key=f"k{seq % 3}", seq=seq)) for seq in range(1, 9)]
    producer.flush()
    worker = make_worker("testing-batch")
    drain(worker, lambda: Effect.objects.count() == 8)

    assert [event_id for call in handlers.batch_calls for event_id in call] == event_ids
    assert all(handlers.attempts[event_id] == 0 for event_id in event_ids)  # the single handler never ran
    assert effects() == list(range(1, 9))
    assert InboxEntry.objects.filter(group="testing-batch", event_id__in=event_ids).count() == 8
    assert handlers.committed_callbacks == event_ids
    assert (worker.counters.handled, worker.counters.duplicates) == (8, 0)


def test_duplicates_in_a_batch_run_are_counted_and_never_reach_the_batch_handler(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    applied_before, twice = uuid.uuid4(), uuid.uuid4()
    InboxEntry.objects.create(group="testing-batch", event_id=applied_before, processed_at=timezone.now())
    producer.event(happened(seq=1), event_id=twice)
    producer.event(happened(seq=2), event_id=applied_before)
    producer.event(happened(seq=1), event_id=twice)
    fresh = producer.event(happened(seq=3))
    producer.flush()
    worker = make_worker("testing-batch")
    drain(worker, lambda: worker.counters.handled + worker.counters.duplicates == 4)

    assert [event_id for call in handlers.batch_calls for event_id in call] == [twice, fresh]
    assert effects() == [1, 3]
    assert (worker.counters.handled, worker.counters.duplicates) == (2, 2)


def test_a_raising_batch_handler_rolls_the_run_back_and_the_per_message_path_keeps_every_rule(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker], testing_topic: str
) -> None:
    Script.objects.create(scenario="broken", broken=True, non_retryable=True)
    first = producer.event(happened(key="truck-1", seq=1))
    broken = producer.event(happened(key="truck-1", scenario="broken", seq=2))
    producer.event(happened(key="truck-2", seq=3))
    producer.event(happened(key="truck-1", seq=4))  # parked behind seq 2, as on the per-message path
    producer.flush()
    worker = make_worker("testing-batch")
    drain(worker, lambda: Effect.objects.count() == 2 and DeadLetter.objects.count() == 2)

    assert handlers.batch_calls and first in handlers.batch_calls[0]  # the batch handler ran first, and raised
    assert effects() == [1, 3]  # applied by the single handler, once each
    assert handlers.attempts[first] == 1 and handlers.committed_callbacks.count(first) == 1
    head = DeadLetter.objects.get(event_id=broken)
    assert (head.reason, head.attempts, head.blocked_by) == (Reason.NON_RETRYABLE, 1, None)
    assert head.handler == "tests.consumers.testapp.handlers.record_effect"
    assert DeadLetter.objects.get(blocked_by=head).reason == Reason.PARKED
    assert InboxEntry.objects.filter(group="testing-batch").count() == 2
    assert (worker.counters.handled, worker.counters.dead_lettered, worker.counters.parked) == (2, 1, 1)
    worker.teardown()
    assert committed_offset(worker, testing_topic) == 4  # every message done, its offset committed


def test_a_retryable_failure_in_a_batch_run_is_retried_alone_and_the_rest_keep_their_order(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="flaky", fail_times=1)
    ids = [
        producer.event(happened(key=f"k{seq}", scenario="flaky" if seq == 3 else "", seq=seq)) for seq in range(1, 7)
    ]
    producer.flush()
    worker = make_worker("testing-batch", batch_size=100)
    drain(worker, lambda: Effect.objects.count() == 6)

    assert effects() == list(range(1, 7))
    assert handlers.attempts[ids[2]] == 2 and worker.counters.retries == 1
    assert not DeadLetter.objects.exists()
    assert sorted(handlers.committed_callbacks) == sorted(ids) and len(handlers.committed_callbacks) == 6


# --- hostile bytes: keys and headers are anyone's bytes --------------------------------------------------------

JAVA_INT_KEY = b"\x00\x00\x00\x07"  # what a Java producer's IntegerSerializer sends for 7


def test_hostile_keys_and_header_values_never_stop_the_partition_and_are_kept_byte_for_byte(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="refuses", broken=True, non_retryable=True)
    long_key = b"k" * 300  # longer than any text column
    nul_header = [("x-note", b"a\x00b"), ("x-empty", b"")]
    producer.event(happened(key="java", seq=1), key=JAVA_INT_KEY)  # valid: simply applied
    producer.event(happened(scenario="refuses", seq=2), key=b"\x00\x00\x00\x08")
    with_nul_header = producer.event(happened(key="plain", scenario="refuses", seq=3), extra_headers=nul_header)
    producer.event(happened(scenario="refuses", seq=4), key=long_key)
    producer.event(happened(scenario="refuses", seq=5), key=b"\xff\xfe")
    producer.event(happened(seq=6), key=b"\xff\xfe")  # the same bytes as a head: parked behind it
    producer.event(happened(seq=7), key=b"\xff\xfd")  # other bytes (same text once decoded lossily): flows
    producer.event(happened(seq=8), key=b"\x00\x00\x00\x08")  # parked
    producer.event(happened(key="last", seq=99))
    producer.flush()

    worker = make_worker()
    drain(worker, lambda: Effect.objects.filter(seq=99).exists())

    assert effects() == [1, 7, 99]
    heads = {bytes(row.key): row for row in DeadLetter.objects.filter(blocked_by=None)}
    assert set(heads) == {b"\x00\x00\x00\x08", b"plain", long_key, b"\xff\xfe"}
    assert {row.reason for row in heads.values()} == {Reason.NON_RETRYABLE}
    parked = {bytes(row.key): row.blocked_by_id for row in DeadLetter.objects.exclude(blocked_by=None)}
    assert parked == {b"\xff\xfe": heads[b"\xff\xfe"].pk, b"\x00\x00\x00\x08": heads[b"\x00\x00\x00\x08"].pk}
    assert heads[b"plain"].event_id == with_nul_header
    assert heads[b"plain"].header_pairs()[-2:] == nul_header
    assert handlers.seen_keys[DeadLetter.objects.get(key=b"\xff\xfe", blocked_by=None).event_id] == b"\xff\xfe"
    assert worker.counters.parked == 2


def test_a_failure_to_record_a_dead_letter_still_moves_the_message_out_of_the_partition(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import DataError

    def refuse(**kwargs: object) -> None:
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

    monkeypatch.setattr("apps.consumers.runtime.deadletter_record", refuse)
    producer.send(value=b"\x00{not json", key=JAVA_INT_KEY, headers=[("ce_id", b"\x00")])
    producer.event(happened(key="after", seq=1))
    producer.flush()

    worker = make_worker()
    drain(worker, lambda: Effect.objects.exists())

    row = DeadLetter.objects.get()
    assert (bytes(row.key), bytes(row.value), row.reason) == (JAVA_INT_KEY, b"\x00{not json", Reason.MISSING_HEADERS)
    assert row.header_pairs() == [("ce_id", b"\x00")]
    assert "could not be recorded in full" in row.error_message and "DataError" in row.error_message
    assert (row.status, row.offset) == (DeadLetter.Status.PENDING, 0)



# --- the ledger is authoritative on redelivery ----------------------------------------------------------------


def test_a_redelivered_message_whose_dead_letter_was_discarded_never_runs_and_parks_nothing(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="refuses", broken=True, non_retryable=True)
    discarded_id = producer.event(happened(key="truck-1", scenario="refuses", seq=1))
    producer.flush()
    drain(make_worker(), lambda: DeadLetter.objects.exists())
    head = DeadLetter.objects.get()
    deadletter_discard(dead_letter_id=head.pk, actor=None, reason="cancelled by the customer")
    Script.objects.filter(scenario="refuses").update(broken=False)  # it would apply now, were it run again
    producer.event(happened(key="truck-1", seq=2))
    producer.flush()

    # Another Kafka group id of the same logical group reads the topic again: a redelivery of both messages.
    worker = make_worker()
    drain(worker, lambda: Effect.objects.exists())

    assert effects() == [2]
    assert handlers.attempts[discarded_id] == 1
    assert list(DeadLetter.objects.values_list("id", "status")) == [(head.pk, DeadLetter.Status.DISCARDED)]
    assert worker.counters.parked == 0


def test_a_redelivered_message_whose_dead_letter_was_replayed_is_a_duplicate_and_parks_nothing(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    producer.send(value=b'{"key": "truck-1", "seq": -1}', key="truck-1", headers=cloud_event_headers(happened(seq=1)))
    producer.flush()
    drain(make_worker(), lambda: DeadLetter.objects.exists())
    head = DeadLetter.objects.get()
    assert head.reason == Reason.INVALID_PAYLOAD
    deadletter_edit_and_replay(dead_letter_id=head.pk, actor=None, payload='{"key": "truck-1", "seq": 1}')
    producer.event(happened(key="truck-1", seq=2))
    producer.flush()

    worker = make_worker()
    drain(worker, lambda: Effect.objects.filter(seq=2).exists())

    assert effects() == [1, 2]
    assert list(DeadLetter.objects.values_list("id", "status")) == [(head.pk, DeadLetter.Status.REPLAYED)]
    assert (worker.counters.duplicates, worker.counters.parked, worker.counters.dead_lettered) == (1, 0, 0)


def test_a_new_event_at_an_old_dead_letters_offset_is_applied_and_if_it_fails_gets_its_own_ledger_row(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    """After a broker rebuild offsets start from zero: the ledger's rows from before name places that new, different
    events now hold (here: dead letters of other events at offsets 0 and 1, as the old broker numbered them)."""
    old = [dead_letter(seq, key=f"old-{seq}") for seq in (0, 1)]
    assert [(row.topic, row.partition, row.offset) for row in old] == [(producer.topic, 0, 0), (producer.topic, 0, 1)]
    Script.objects.create(scenario="refuses", broken=True, non_retryable=True)
    applied = producer.event(happened(key="new-0", seq=10))  # lands at offset 0
    refused = producer.event(happened(key="new-1", scenario="refuses", seq=11))  # lands at offset 1
    producer.event(happened(key="new-2", seq=12))
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: Effect.objects.filter(seq=12).exists())

    assert effects(event_id=applied) == [10]
    row = DeadLetter.objects.get(event_id=refused)
    assert (row.offset, row.reason, row.status) == (1, Reason.NON_RETRYABLE, DeadLetter.Status.PENDING)
    assert DeadLetter.objects.count() == 3
    assert worker.counters.in_ledger == 0


def test_the_same_event_published_again_at_a_new_offset_keeps_its_one_ledger_row_and_its_fate(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    """The amnesia re-publish: every event of the window arrives again, at new offsets. A pending one still waits
    (one row, not a parked copy), a discarded one stays discarded, a replayed one is a duplicate."""
    Script.objects.create(scenario="refuses", broken=True, non_retryable=True)
    events = {name: happened(key=name, scenario="refuses", seq=seq)
              for seq, name in enumerate(["pending", "discarded", "replayed"], start=1)}
    ids = {name: producer.event(event) for name, event in events.items()}
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: DeadLetter.objects.count() == 3)
    rows = {name: DeadLetter.objects.get(event_id=event_id) for name, event_id in ids.items()}
    deadletter_discard(dead_letter_id=rows["discarded"].pk, actor=None, reason="cancelled by the customer")
    Script.objects.filter(scenario="refuses").update(broken=False)
    deadletter_replay(dead_letter_id=rows["replayed"].pk)
    Script.objects.filter(scenario="refuses").update(broken=True, non_retryable=True)

    for name, event in events.items():
        producer.event(event, event_id=ids[name])  # the same events at offsets 3, 4, 5
    producer.event(happened(key="after", seq=99))
    Script.objects.filter(scenario="refuses").update(broken=False)  # the discarded one would apply, were it run
    producer.flush()
    drain(worker, lambda: Effect.objects.filter(seq=99).exists())

    statuses = {event_id: (offset, status) for event_id, offset, status
                in DeadLetter.objects.values_list("event_id", "offset", "status")}
    assert statuses == {ids["pending"]: (0, DeadLetter.Status.PENDING),
                        ids["discarded"]: (1, DeadLetter.Status.DISCARDED),
                        ids["replayed"]: (2, DeadLetter.Status.REPLAYED)}
    assert Effect.objects.filter(event_id__in=ids.values()).count() == 1  # the replay's, once
    assert (worker.counters.in_ledger, worker.counters.duplicates, worker.counters.parked) == (2, 1, 0)


# --- retries never hold a partition hostage ---------------------------------------------------------------------


def test_a_batch_of_failing_messages_spends_at_most_the_batch_retry_budget_then_they_wait_in_the_ledger_as_retrying(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker], settings: SettingsWrapper
) -> None:
    settings.CONSUMER_MAX_ATTEMPTS = 5
    settings.CONSUMER_RETRY_BACKOFF_INITIAL_S = settings.CONSUMER_RETRY_BACKOFF_MAX_S = 0.1
    settings.CONSUMER_RETRY_BATCH_BUDGET_S = 0.5  # per batch: about 5 retries in all, not 4 per message
    Script.objects.create(scenario="broken", broken=True)
    failing = [producer.event(happened(key=f"k{seq}", scenario="broken", seq=seq)) for seq in range(1, 21)]
    producer.event(happened(key="fine", seq=99))
    producer.flush()
    worker = make_worker(batch_size=100)
    drain(worker, lambda: worker.counters.handled + worker.counters.duplicates > 0)  # the group join
    started = time.monotonic()
    drain(worker, lambda: Effect.objects.filter(seq=99).exists())

    assert time.monotonic() - started < 5  # the old per-message retries took 20 x 0.4 s of sleep alone
    assert sum(handlers.attempts[event_id] for event_id in failing) <= 20 + 6
    rows = DeadLetter.objects.filter(event_id__in=failing)
    assert rows.count() == 20
    assert set(rows.values_list("status", "reason")) == {(DeadLetter.Status.RETRYING, Reason.HANDLER_ERROR)}
    assert all(row.next_attempt_at > timezone.now() for row in rows)


def test_the_worker_refuses_to_start_when_the_batch_retry_budget_is_not_well_under_max_poll_interval(
    settings: SettingsWrapper,
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import CommandError, call_command

    settings.CONSUMER_RETRY_BATCH_BUDGET_S = 200  # librdkafka's max.poll.interval.ms is 300 s
    with pytest.raises(ImproperlyConfigured, match=r"CONSUMER_RETRY_BATCH_BUDGET_S=200 .*300000 ms, so at most 100 s"):
        ConsumerWorker("testing")
    with pytest.raises(CommandError, match="max.poll.interval.ms"):
        call_command("consume", "testing")
    settings.CONSUMER_RETRY_BATCH_BUDGET_S = 30
    settings.KAFKA_CLIENT_CONFIG = {"max.poll.interval.ms": "60000"}  # a deployment that lowered it
    with pytest.raises(ImproperlyConfigured, match="at most 20 s"):
        ConsumerWorker("testing")


def test_a_retrying_message_parks_only_its_key_and_a_successful_automatic_retry_releases_the_key_in_order(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    Script.objects.create(scenario="broken", broken=True)
    failing = producer.event(happened(key="truck-1", scenario="broken", seq=1))
    producer.event(happened(key="truck-1", seq=2))
    producer.event(happened(key="truck-2", seq=3))
    producer.event(happened(key="truck-1", seq=4))
    producer.event(happened(key="truck-3", seq=5), partition=1)
    producer.flush()
    worker = make_worker()
    drain(worker, lambda: Effect.objects.count() == 2 and DeadLetter.objects.count() == 3)

    head = DeadLetter.objects.get(event_id=failing)
    assert (head.status, head.blocked_by_id) == (DeadLetter.Status.RETRYING, None)
    assert DeadLetter.objects.filter(blocked_by=head).count() == 2
    assert sorted(effects()) == [3, 5]  # other keys and partitions flowed
    assert deadletter_retry_due() == {}  # not due yet

    DeadLetter.objects.filter(pk=head.pk).update(next_attempt_at=timezone.now())
    Script.objects.filter(scenario="broken").update(broken=False)
    assert deadletter_retry_due() == {"applied": 1}

    assert effects()[2:] == [1, 2, 4]
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {DeadLetter.Status.REPLAYED}
    producer.event(happened(key="truck-1", seq=6))  # the key flows again
    producer.flush()
    drain(worker, lambda: Effect.objects.filter(seq=6).exists())


def test_an_idle_consumer_applies_a_new_message_as_it_arrives_not_when_a_batch_is_full_or_the_poll_times_out(
    producer: RawProducer, make_worker: Callable[..., ConsumerWorker]
) -> None:
    worker = make_worker("testing-batch", poll_timeout=0.2)
    producer.event(happened(key="k1", seq=1))
    producer.flush()
    drain(worker, lambda: Effect.objects.count() == 1)  # joined, partitions assigned, nothing left to fetch
    # Idle now, as a consumer between bursts: a batch holds up to 500 messages and a poll may wait 90 s for one.
    worker.poll_timeout = 90.0
    producer.event(happened(key="k1", seq=2))
    producer.flush()

    iteration = threading.Thread(target=worker.run_once)
    iteration.start()
    iteration.join(timeout=45)  # far below the poll timeout: the iteration ended because a message came
    applied_in_time = effects()
    iteration.join()  # before the worker's teardown, whatever happened

    assert applied_in_time == [1, 2]
