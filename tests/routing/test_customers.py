"""Customers are announced to other contexts: CustomerUpserted in the same transaction, revision per change."""

from __future__ import annotations

import io
import threading
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from apps import outbox
from apps.common.postgres import advisory_lock_id
from apps.contracts import CustomerUpserted
from apps.outbox.models import OutboxEvent
from apps.routing.models import Customer
from apps.routing.services import customer_create, customer_update, customers_announce
from tests.routing.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def _announced() -> list[CustomerUpserted]:
    rows = OutboxEvent.objects.filter(event_type=CustomerUpserted.ce_type()).order_by("id")
    return [CustomerUpserted.model_validate_json(row.payload) for row in rows]


def test_creating_a_customer_publishes_customer_upserted_revision_1_keyed_by_customer() -> None:
    customer = customer_create(name="Ege Foods", email="ap@ege.example")

    [event] = _announced()
    assert (event.customer_id, event.revision, event.name) == (customer.pk, 1, "Ege Foods")
    assert OutboxEvent.objects.get(event_type=CustomerUpserted.ce_type()).key == f"customer:{customer.pk}"


def test_each_change_bumps_the_revision_and_an_unchanged_save_publishes_nothing() -> None:
    customer = customer_create(name="Ege Foods")
    customer_update(customer=customer, data={"name": "Ege Foods A.S."})
    customer_update(customer=customer, data={"name": "Ege Foods A.S."})  # no change
    customer_update(customer=customer, data={"phone": "+90 232 000"})

    assert [(e.revision, e.name) for e in _announced()] == [(1, "Ege Foods"), (2, "Ege Foods A.S."),
                                                             (3, "Ege Foods A.S.")]
    assert Customer.objects.get(pk=customer.pk).revision == 3


def test_a_refused_change_publishes_nothing_and_keeps_the_revision() -> None:
    customer = customer_create(name="Ege Foods")
    with pytest.raises(Exception):
        customer_update(customer=customer, data={"email": "not an email"})
    assert len(_announced()) == 1
    assert Customer.objects.get(pk=customer.pk).revision == 1


def test_announce_customers_publishes_every_existing_customer_at_its_current_revision() -> None:
    older = CustomerFactory(name="Marmara Glass")  # made before customers were announced: no event
    Customer.objects.filter(pk=older.pk).update(revision=4)
    newer = CustomerFactory(name="Ege Foods")

    call_command("announce_customers")

    assert sorted((e.customer_id, e.revision, e.name) for e in _announced()) == [
        (older.pk, 4, "Marmara Glass"), (newer.pk, 1, "Ege Foods"),
    ]


def _customers(count: int) -> list[Customer]:
    return Customer.objects.bulk_create(
        Customer(name=f"Customer {n}", changed_at=timezone.now()) for n in range(count)
    )


@pytest.mark.django_db(transaction=True)
def test_announcing_many_customers_holds_at_most_one_batch_of_locks_and_frees_earlier_keys_for_planning() -> None:
    """Each CustomerUpserted takes its key's advisory lock until its transaction ends: in one transaction for
    every customer, thousands of customers exhaust the lock table (max_locks_per_transaction × connections)
    and block every route planned on a truck whose number equals an announced customer's. Batches bound both."""
    _customers(130)
    held: list[int] = []
    first_key_free: list[bool] = []
    publish = outbox.publish

    def observed_publish(event: CustomerUpserted) -> object:
        event_id = publish(event)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'")
            held.append(cursor.fetchone()[0])
        if len(held) == 130:  # the last customer, in the last batch: may planning take the first one's key now?
            first_key_free.append(_lock_free_elsewhere(OutboxEvent.objects.order_by("id").first()))
        return event_id

    with mock.patch("apps.routing.services.outbox.publish", observed_publish):
        assert customers_announce(batch_size=50) == 130

    assert max(held) == 50
    assert first_key_free == [True]
    assert OutboxEvent.objects.filter(event_type=CustomerUpserted.ce_type()).count() == 130


def _lock_free_elsewhere(row: OutboxEvent | None) -> bool:
    """Whether another connection (planning a route, say) can take the outbox lock of `row`'s key now."""
    assert row is not None
    lock_id = advisory_lock_id(row.topic.encode(), row.key.encode())
    free: list[bool] = []

    def attempt() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id])
                free.append(cursor.fetchone()[0])
        finally:
            connection.close()

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(timeout=30)
    return free == [True]


def test_the_announce_command_reports_each_batch_and_how_many_in_all() -> None:
    _customers(5)
    out = io.StringIO()

    call_command("announce_customers", "--batch-size", "2", stdout=out)

    assert out.getvalue().splitlines() == [
        "announced 2 customers", "announced 4 customers", "announced 5 customers",
        "announced 5 customers through the outbox",
    ]
    assert len(_announced()) == 5
