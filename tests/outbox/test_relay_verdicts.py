"""What a delivery report means for its row, and what a batch records: pure functions, no broker, no database."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from apps.outbox.relay.batch import BEHIND_UNCONFIRMED, Batch, decide
from apps.outbox.relay.ordering import FAILED, HELD, PENDING, PUBLISHED, KeyOrder
from apps.outbox.relay.verdicts import Report, Verdict, verdict

KEY = ("routing.events", "truck:1")


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ((0, 17), Verdict.DELIVERED),
        (None, Verdict.RETRY),
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Verdict.REFUSED_FOR_GOOD),
        (KafkaError(KafkaError.INVALID_RECORD), Verdict.REFUSED_FOR_GOOD),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), Verdict.NEEDS_A_PERSON),
        (KafkaError(KafkaError._UNKNOWN_TOPIC), Verdict.NEEDS_A_PERSON),
        (KafkaError(KafkaError.POLICY_VIOLATION), Verdict.NEEDS_A_PERSON),
        (KafkaError(KafkaError._MSG_TIMED_OUT), Verdict.RETRY),
        (KafkaError(KafkaError._PURGE_INFLIGHT), Verdict.RETRY),
        (KafkaError(KafkaError._PURGE_QUEUE), Verdict.NOT_SENT),
        (KafkaError(KafkaError._FATAL, fatal=True), Verdict.NOT_SENT),
    ],
    ids=lambda value: value.name() if isinstance(value, KafkaError) else str(value),
)
def test_each_report_gets_its_verdict(report: Report, expected: Verdict) -> None:
    assert verdict(report) is expected


def test_a_size_refusal_that_is_fatal_is_not_a_verdict_on_the_bytes() -> None:
    assert verdict(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, fatal=True)) is Verdict.RETRY


def _batch(*rows: tuple[int, int | None, Report]) -> Batch:
    batch = Batch(0, connection=None)
    for row_id, previous_id, report in rows:
        slot = batch.add(
            row_id, previous_id, topic="routing.events", key=f"truck:{row_id}", cluster_topic="routing.events",
            event_id=f"e{row_id}", time="2026-11-26T08:00:00Z", traceparent="",
        )
        batch.reports[slot] = report
    return batch


def test_a_delivered_row_behind_an_unconfirmed_row_of_its_key_stays_pending() -> None:
    batch = _batch((1, None, KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")), (2, 1, (0, 8)), (3, None, (1, 4)))
    record = decide(batch, KeyOrder(remembered_batches=2))
    assert record.outcomes == {1: PENDING, 2: PENDING, 3: PUBLISHED}
    assert [(r.id, r.error) for r in record.retried] == [(1, "timed out"), (2, BEHIND_UNCONFIRMED)]
    assert [d.id for d in record.published] == [3]


def test_a_row_behind_a_failed_row_of_its_key_is_published() -> None:
    batch = _batch((1, None, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)), (2, 1, (0, 9)))
    record = decide(batch, KeyOrder(remembered_batches=2))
    assert record.outcomes == {1: FAILED, 2: PUBLISHED}


def test_a_row_behind_a_row_of_an_earlier_batch_follows_that_rows_recorded_outcome() -> None:
    order = KeyOrder(remembered_batches=2)
    order.sent(1, KEY)
    order.sent(2, KEY)
    order.recorded({KEY: 1}, {1: PENDING})
    assert decide(_batch((2, 1, (0, 3))), order).outcomes == {2: PENDING}


def test_refusals_a_person_must_fix_are_counted_per_error_and_topic() -> None:
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")
    record = decide(_batch((1, None, refused), (2, None, refused)), KeyOrder(remembered_batches=2))
    assert record.problems == {("TOPIC_AUTHORIZATION_FAILED", "routing.events"): [2, "denied"]}
    assert record.outcomes == {1: PENDING, 2: PENDING}


def test_acknowledged_offsets_are_summed_up_per_partition() -> None:
    record = decide(_batch((1, None, (0, 5)), (2, None, (0, 7)), (3, None, (1, 2))), KeyOrder(remembered_batches=2))
    assert record.acked == {("routing.events", 0): [5, 7, "e2"], ("routing.events", 1): [2, 2, "e3"]}


def test_a_previous_row_in_flight_here_is_waited_for_a_final_one_is_not_and_an_unknown_one_holds_the_row() -> None:
    order = KeyOrder(remembered_batches=1)
    order.sent(10, KEY)
    assert order.previous_if_ours(10) == 10
    order.recorded({KEY: 10}, {10: PUBLISHED})
    assert order.previous_if_ours(10) is None
    order.recorded({}, {11: PUBLISHED})  # a later batch pushes it out of what this relay remembers
    assert order.previous_if_ours(10) is HELD


def test_what_a_batch_holds_a_refused_topic_a_key_not_confirmed_and_frees_a_delivered_key() -> None:
    batch = _batch(
        (1, None, KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")),
        (2, None, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")),
        (3, None, (0, 4)),
    )

    record = decide(batch, KeyOrder(remembered_batches=3))

    assert record.unconfirmed_keys == {("routing.events", "truck:1")}
    assert record.refused_topics == {"routing.events"}
    assert record.delivered_keys == {("routing.events", "truck:3")}
