"""Customers are announced to other contexts: CustomerUpserted in the same transaction, revision per change."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.contracts import CustomerUpserted
from apps.outbox.models import OutboxEvent
from apps.routing.models import Customer
from apps.routing.services import customer_create, customer_update
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
