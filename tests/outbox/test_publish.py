"""The write side of the outbox: one row in the caller's transaction, or nothing at all."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps import outbox
from apps.common.tracing import trace_context
from apps.outbox.models import OutboxEvent, PendingEvent
from apps.outbox.services import EventSchemaError, OutboxError
from apps.routing.services import route_calculate
from tests.factories import route_calculated
from tests.routing.factories import ANATOLIA_STOPS, CustomerFactory, TruckFactory


@pytest.mark.django_db(transaction=True)
def test_publish_outside_a_transaction_raises_and_writes_nothing() -> None:
    with pytest.raises(OutboxError, match="inside transaction.atomic"):
        outbox.publish(route_calculated())
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_leaves_no_event() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Group.objects.create(name="business row")
        outbox.publish(route_calculated())
        raise RuntimeError("business failure after publish")
    assert OutboxEvent.objects.count() == 0
    assert not Group.objects.filter(name="business row").exists()


@pytest.mark.django_db(transaction=True)
def test_committed_transaction_leaves_exactly_one_row_with_envelope_fields() -> None:
    with transaction.atomic(), trace_context(None) as traceparent:
        event_id = outbox.publish(route_calculated(truck_id=42))
    row = OutboxEvent.objects.get()
    assert row.event_id == event_id
    assert row.topic == "routing.events"
    assert row.key == "truck:42"
    assert row.event_type == "logiflow.routing.RouteCalculated.v1"
    assert row.source == "/logiflow/routing"
    assert row.traceparent == traceparent
    assert row.state == OutboxEvent.State.PENDING
    headers = dict(row.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == str(event_id).encode()
    assert headers["content-type"] == b"application/json"


@pytest.mark.django_db(transaction=True)
def test_event_invalid_against_its_schema_rolls_the_business_write_back() -> None:
    invalid = route_calculated().model_copy(update={"truck_id": -1})  # model_copy skips validation
    with pytest.raises(EventSchemaError, match="truck_id"):
        with transaction.atomic():
            Group.objects.create(name="business row")
            outbox.publish(invalid)
    assert OutboxEvent.objects.count() == 0
    assert not Group.objects.filter(name="business row").exists()


@pytest.mark.django_db(transaction=True)
def test_swallowed_schema_error_still_marks_the_transaction_for_rollback() -> None:
    invalid = route_calculated().model_copy(update={"stops": []})
    with transaction.atomic():
        Group.objects.create(name="business row")
        with pytest.raises(EventSchemaError):
            outbox.publish(invalid)
    assert not Group.objects.filter(name="business row").exists()


@pytest.mark.django_db(transaction=True)
def test_publish_queues_the_row_for_the_relay_in_the_same_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox.publish(route_calculated(truck_id=7))
        assert PendingEvent.objects.count() == 1  # written in the caller's transaction...
        raise RuntimeError("business failure after publish")
    assert PendingEvent.objects.count() == 0  # ...and rolled back with it

    with transaction.atomic():
        event_id = outbox.publish(route_calculated(truck_id=8))
    [queued] = PendingEvent.objects.select_related("event")
    assert (queued.event.event_id, queued.key) == (event_id, "truck:8")


@pytest.mark.django_db(transaction=True)
def test_publish_many_writes_what_publish_writes_in_order_with_one_statement() -> None:
    events = [route_calculated(route_id=route_id, truck_id=truck_id)
              for route_id, truck_id in ((1, 7), (2, 8), (3, 7))]
    with transaction.atomic():
        one_by_one = [outbox.publish(event) for event in events]
        expected = [(r.topic, r.key, r.event_type, r.source, r.payload, r.state)
                    for r in OutboxEvent.objects.order_by("id")]
        transaction.set_rollback(True)

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        event_ids = outbox.publish_many(events, traceparents=["00-" + "1" * 32 + "-" + "2" * 16 + "-01", None, ""])
    sent = [query["sql"] for query in queries if query["sql"] != "BEGIN"]
    assert len(sent) == 1 and sent[0].endswith("COMMIT") and len(one_by_one) == 3  # the statement, with the COMMIT

    rows = list(OutboxEvent.objects.order_by("id"))
    assert [(r.topic, r.key, r.event_type, r.source, r.payload, r.state) for r in rows] == expected
    assert [r.event_id for r in rows] == event_ids
    assert [r.traceparent for r in rows] == ["00-" + "1" * 32 + "-" + "2" * 16 + "-01", "", ""]
    assert list(PendingEvent.objects.order_by("pk").values_list("pk", "key")) == [
        (r.pk, r.key) for r in rows
    ]


@pytest.mark.django_db(transaction=True)
def test_publish_many_with_an_invalid_event_writes_nothing_and_rolls_the_business_write_back() -> None:
    events = [route_calculated(route_id=1), route_calculated(route_id=2).model_copy(update={"stops": []})]
    with pytest.raises(EventSchemaError, match="stops"), transaction.atomic():
        Group.objects.create(name="business row")
        outbox.publish_many(events)
    assert OutboxEvent.objects.count() == 0
    assert not Group.objects.filter(name="business row").exists()
    with pytest.raises(OutboxError, match="inside transaction.atomic"):
        outbox.publish_many(events[:1])


@pytest.mark.django_db(transaction=True)
def test_a_business_transaction_pays_no_round_trip_for_its_publish() -> None:
    """`route_calculate` sends as many queries as it would with publishing switched off: its event travels with
    the COMMIT."""
    truck, customer = TruckFactory(), CustomerFactory()

    def queries_of_one_route() -> int:
        with CaptureQueriesContext(connection) as queries:
            route_calculate(truck=truck, customer=customer, stops=ANATOLIA_STOPS)
        return len(queries)

    queries_of_one_route()  # warm: the first call reads what later calls find cached
    with_publish = queries_of_one_route()
    with mock.patch.object(outbox, "publish", lambda event: uuid.uuid4()):
        without_publish = queries_of_one_route()
    assert with_publish == without_publish
    assert OutboxEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_publish_and_publish_many_in_one_transaction_write_their_rows_in_call_order() -> None:
    first, second, third = (route_calculated(route_id=n, truck_id=7) for n in (1, 2, 3))
    with transaction.atomic():
        expected = [outbox.publish(first), *outbox.publish_many([second]), outbox.publish(third)]
    assert list(OutboxEvent.objects.order_by("id").values_list("event_id", flat=True)) == expected
