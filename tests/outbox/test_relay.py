"""The relay in-process: envelope on the topic, rollbacks, refusals, per-key order with a second claimant."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.test import override_settings
from pytest_django.fixtures import Settings as SettingsWrapper

from apps import outbox
from apps.common.tracing import trace_context
from apps.contracts import PlannedStop
from apps.devstack.process import free_port
from apps.outbox.models import OutboxEvent, PendingEvent
from apps.outbox.relay import OutboxRelay
from tests.factories import invoice_generated, route_calculated
from tests.outbox.support import drain_in_process, pending_count, wait_for
from tests.support.kafka import TopicTail

TOPIC = "routing.events"


@pytest.fixture
def tail(kafka_bootstrap: str):
    topic_tail = TopicTail(TOPIC)
    yield topic_tail
    topic_tail.close()


def _ids_on_topic(tail: TopicTail, count: int, *, among: set[str], timeout: float = 20.0) -> list[str]:
    """The ce_ids (in topic order) of this test's events; the session topic also holds other tests' events."""
    ids: list[str] = []
    deadline = time.monotonic() + timeout
    while len(ids) < count and time.monotonic() < deadline:
        batch = tail.read(1, timeout=max(0.0, deadline - time.monotonic()))
        ids.extend(m.headers["ce_id"] for m in batch if m.headers["ce_id"] in among)
    return ids


def _raw_connection() -> psycopg.Connection:
    """A second, independent connection to the test database (another relay, another writer)."""
    params = connection.get_connection_params()
    return psycopg.connect(
        host=params.get("host"), port=params.get("port"), user=params.get("user"),
        password=params.get("password"), dbname=params["dbname"],
    )


@pytest.mark.django_db(transaction=True)
def test_committed_event_reaches_the_topic_with_cloudevents_headers_and_json_value(tail: TopicTail) -> None:
    event = route_calculated(truck_id=42)
    with transaction.atomic(), trace_context(None) as traceparent:
        event_id = outbox.publish(event)

    relay = drain_in_process()

    # The session topic also carries other tests' late events: this test's event must be there exactly once.
    received = tail.read(1)
    received += tail.read(100, timeout=1)
    [message] = [m for m in received if m.headers.get("ce_id") == str(event_id)]
    row = OutboxEvent.objects.get()
    assert message.key == "truck:42"
    assert json.loads(message.value) == json.loads(event.model_dump_json())
    assert message.headers == {
        "ce_specversion": "1.0",
        "ce_id": str(event_id),
        "ce_source": "/logiflow/routing",
        "ce_type": "logiflow.routing.RouteCalculated.v1",
        "ce_time": row.created_at.isoformat().replace("+00:00", "Z"),
        "content-type": "application/json",
        "traceparent": traceparent,
    }
    assert (row.state, row.attempts) == (OutboxEvent.State.PUBLISHED, 1)
    assert (row.partition, row.offset) == (message.partition, message.offset)
    assert row.published_at is not None
    assert relay.totals["published"] == 1


@pytest.mark.django_db(transaction=True)
def test_rolled_back_event_never_reaches_the_topic(tail: TopicTail) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = outbox.publish(route_calculated(truck_id=1, calculation=1))
        raise RuntimeError("business failure")
    with transaction.atomic():
        marker = outbox.publish(route_calculated(truck_id=1, calculation=2))

    drain_in_process()

    # The marker was committed after the rollback, on the same key (so the same partition): once it
    # arrived, the rolled-back event would have arrived before it.
    received = [m.headers["ce_id"] for m in tail.read(2, timeout=5)]
    assert str(marker) in received
    assert str(rolled_back) not in received


@pytest.mark.django_db(transaction=True)
def test_queue_entry_stays_on_transient_failure_and_leaves_only_on_confirmed_delivery(tail: TopicTail) -> None:
    with transaction.atomic():
        event_id = outbox.publish(route_calculated(truck_id=3))
    row = OutboxEvent.objects.get(event_id=event_id)

    # No broker listens there: the delivery times out, a transient failure.
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", OUTBOX_RELAY_DELIVERY_TIMEOUT_S=1.0):
        relay = OutboxRelay()
        relay.setup()
        try:
            relay.run_once()
        finally:
            relay.teardown()
    row.refresh_from_db()
    assert (row.state, row.attempts) == (OutboxEvent.State.PENDING, 1)
    assert row.last_error
    assert PendingEvent.objects.filter(event=row).exists()

    drain_in_process()
    row.refresh_from_db()
    assert (row.state, row.attempts) == (OutboxEvent.State.PUBLISHED, 2)
    assert not PendingEvent.objects.filter(event=row).exists()
    assert _ids_on_topic(tail, 1, among={str(event_id)}) == [str(event_id)]


@pytest.mark.django_db(transaction=True)
def test_oversized_event_is_marked_failed_and_later_events_of_its_key_still_go(
    tail: TopicTail, settings: SettingsWrapper
) -> None:
    # The contract's bounds keep every event far below a broker's default limit, so the limit here is the
    # client's: a message over `message.max.bytes` is refused for good (MSG_SIZE_TOO_LARGE), as the broker's is.
    settings.KAFKA_CLIENT_CONFIG = {"message.max.bytes": "20000"}
    stops = [
        PlannedStop(sequence=n, name="x" * 200, lat=39.9, lon=32.8, eta=datetime(2026, 11, 26, 9, tzinfo=UTC),
                    leg_distance_km=Decimal("1.000"))
        for n in range(1, 101)
    ]
    with transaction.atomic():
        too_big = outbox.publish(route_calculated(truck_id=5, calculation=1, stops=stops))
        after = outbox.publish(route_calculated(truck_id=5, calculation=2))

    relay = drain_in_process()

    failed = OutboxEvent.objects.get(event_id=too_big)
    assert failed.state == OutboxEvent.State.FAILED
    assert failed.attempts == 1
    assert "too large" in failed.last_error.lower()
    assert not PendingEvent.objects.filter(event=failed).exists()  # refused for good: out of the queue
    assert OutboxEvent.objects.get(event_id=after).state == OutboxEvent.State.PUBLISHED
    assert _ids_on_topic(tail, 1, among={str(too_big), str(after)}) == [str(after)]
    assert relay.totals["failed"] == 1


@pytest.mark.django_db(transaction=True)
def test_row_whose_key_has_an_earlier_row_claimed_elsewhere_waits_for_it(tail: TopicTail) -> None:
    """Another relay holds truck 1's first event: this relay sends truck 2's but not truck 1's second."""
    with transaction.atomic():
        first_of_1 = outbox.publish(route_calculated(truck_id=1, calculation=1))
        second_of_1 = outbox.publish(route_calculated(truck_id=1, calculation=2))
        only_of_2 = outbox.publish(route_calculated(truck_id=2, calculation=1))
    mine = {str(first_of_1), str(second_of_1), str(only_of_2)}
    other_relay = _raw_connection()
    other_relay.execute(  # a relay's claim locks the row's queue entry
        "SELECT q.id FROM outbox_pending q JOIN outbox_outboxevent o ON o.id = q.id WHERE o.event_id = %s"
        " FOR UPDATE OF q SKIP LOCKED",
        [first_of_1],
    )
    relay = OutboxRelay()
    relay.setup()
    try:
        relay.run_once()
        assert _ids_on_topic(tail, 1, among=mine) == [str(only_of_2)]
        assert OutboxEvent.objects.get(event_id=second_of_1).state == OutboxEvent.State.PENDING
        assert _ids_on_topic(tail, 1, among=mine, timeout=1) == []

        other_relay.rollback()  # the other relay gave its claim up: truck 1 may go, in order
        assert wait_for(lambda: (relay.run_once(), pending_count())[1] == 0, timeout=20, interval=0)
    finally:
        relay.teardown()
        other_relay.close()
    assert _ids_on_topic(tail, 2, among=mine) == [str(first_of_1), str(second_of_1)]


@pytest.mark.django_db(transaction=True)
def test_overlapping_transactions_for_one_key_reach_the_topic_in_commit_order(tail: TopicTail) -> None:
    """The first writer's event is written (a later statement of its transaction sent it) and its transaction held
    open; the second, for the same truck, waits for the key at its commit and comes after it."""
    ids = _two_writers_for_one_key(first_runs_a_statement_after_publishing=True)
    drain_in_process()
    assert _ids_on_topic(tail, 2, among={ids["first"], ids["second"]}) == [ids["first"], ids["second"]]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_held_open_after_its_last_publish_does_not_hold_up_the_key(tail: TopicTail) -> None:
    """The event of a transaction is written with its commit: an open transaction whose publish is still unsent
    holds no lock, the second writer commits first and its event comes first (commit order, again)."""
    ids = _two_writers_for_one_key(first_runs_a_statement_after_publishing=False)
    drain_in_process()
    assert _ids_on_topic(tail, 2, among={ids["first"], ids["second"]}) == [ids["second"], ids["first"]]


def _two_writers_for_one_key(*, first_runs_a_statement_after_publishing: bool) -> dict[str, str]:
    first_published = threading.Event()
    first_may_commit = threading.Event()
    second_committed = threading.Event()
    ids: dict[str, str] = {}

    def first_writer() -> None:
        try:
            with transaction.atomic():
                ids["first"] = str(outbox.publish(route_calculated(truck_id=9, calculation=1)))
                if first_runs_a_statement_after_publishing:
                    OutboxEvent.objects.exists()
                first_published.set()
                first_may_commit.wait(10)
        finally:
            connection.close()

    def second_writer() -> None:
        try:
            first_published.wait(10)
            with transaction.atomic():
                ids["second"] = str(outbox.publish(route_calculated(truck_id=9, calculation=2)))
            second_committed.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    for thread in threads:
        thread.start()
    assert first_published.wait(10)
    if first_runs_a_statement_after_publishing:
        assert wait_for(_second_writer_is_waiting, timeout=10)
    else:
        assert second_committed.wait(10)
    first_may_commit.set()
    for thread in threads:
        thread.join(20)
    return ids


def _second_writer_is_waiting() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'"
        )
        return cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_same_key_on_another_topic_is_not_held_back(kafka_bootstrap: str) -> None:
    """Truck 7's event (routing.events) is claimed elsewhere; route 7's invoice (invoicing.events) still goes."""
    with transaction.atomic():
        truck_7 = outbox.publish(route_calculated(truck_id=7))
        route_7 = outbox.publish(invoice_generated(route_id=7))
    other_relay = _raw_connection()
    other_relay.execute(
        "SELECT q.id FROM outbox_pending q JOIN outbox_outboxevent o ON o.id = q.id WHERE o.event_id = %s"
        " FOR UPDATE OF q SKIP LOCKED",
        [truck_7],
    )
    relay = OutboxRelay()
    relay.setup()
    try:
        relay.run_once()
        assert OutboxEvent.objects.get(event_id=route_7).state == OutboxEvent.State.PUBLISHED
        assert OutboxEvent.objects.get(event_id=truck_7).state == OutboxEvent.State.PENDING
    finally:
        relay.teardown()
        other_relay.close()
