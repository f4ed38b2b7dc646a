"""The `invoicing` group's RouteCalculated handler, called as the consumer runtime calls it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from apps.consumers.registry import EventMeta, Fix, NonRetryableError, handler_for
from apps.contracts import CustomerUpserted, RouteCalculated
from apps.invoicing.handlers import MissingBillingData, issue_invoice_for_route, learn_customer
from apps.invoicing.models import Invoice, KnownCustomer
from tests.invoicing.factories import BillingAccountFactory, three_stop_route

pytestmark = pytest.mark.django_db


def meta_for(event: RouteCalculated, *, offset: int = 0) -> EventMeta:
    return EventMeta(
        event_id=uuid.uuid4(), ce_type=event.ce_type(), source=event.ce_source(), time=datetime.now(UTC),
        key=event.partition_key(), traceparent=None, topic=event.topic(), partition=0, offset=offset,
        group="invoicing",
    )


def test_the_handler_is_registered_for_route_calculated_in_the_invoicing_group() -> None:
    registration = handler_for("invoicing", RouteCalculated.ce_type())
    assert registration is not None and registration.handler is issue_invoice_for_route


def test_the_handler_issues_the_invoice_and_records_the_source_event() -> None:
    BillingAccountFactory()
    event = three_stop_route(route_id=21)
    meta = meta_for(event)
    issue_invoice_for_route(event, meta)

    invoice = Invoice.objects.get()
    assert (invoice.route_id, invoice.source_event_id) == (21, meta.event_id)


def test_the_same_event_delivered_twice_issues_once() -> None:
    BillingAccountFactory()
    event = three_stop_route(route_id=21)
    issue_invoice_for_route(event, meta_for(event, offset=1))
    issue_invoice_for_route(event, meta_for(event, offset=2))  # e.g. redelivered after a rebalance
    assert Invoice.objects.count() == 1


def test_missing_billing_data_is_non_retryable_and_names_the_customer() -> None:
    event = three_stop_route(route_id=21, customer_id=44, customer_name="Ege Foods")
    with pytest.raises(MissingBillingData) as raised:
        issue_invoice_for_route(event, meta_for(event))

    assert isinstance(raised.value, NonRetryableError)
    assert "customer 44 'Ege Foods' has no billing account" in str(raised.value)
    assert raised.value.fix == Fix(label="Add billing account for Ege Foods",
                                   url="/admin/invoicing/billingaccount/add/?customer=44")
    assert Invoice.objects.count() == 0


def test_after_finance_adds_billing_data_the_replayed_message_issues_the_invoice_once() -> None:
    event = three_stop_route(route_id=21, customer_id=44, customer_name="Ege Foods")
    meta = meta_for(event)
    with pytest.raises(MissingBillingData):
        issue_invoice_for_route(event, meta)
    BillingAccountFactory(customer_id=44, name="Ege Foods A.S.")

    issue_invoice_for_route(event, meta)  # the replay
    issue_invoice_for_route(event, meta)  # a replay clicked twice
    invoice = Invoice.objects.get()
    assert (invoice.customer_id, invoice.customer_name) == (44, "Ege Foods A.S.")


def customer_upserted(*, revision: int, name: str, customer_id: int = 3) -> CustomerUpserted:
    return CustomerUpserted(
        customer_id=customer_id, revision=revision, name=name, changed_at=datetime(2026, 3, revision, tzinfo=UTC)
    )


def test_the_directory_handler_is_registered_for_customer_upserted_in_the_invoicing_group() -> None:
    registration = handler_for("invoicing", CustomerUpserted.ce_type())
    assert registration is not None and registration.handler is learn_customer


def test_a_customer_upserted_adds_the_customer_to_the_directory_and_a_newer_revision_renames_it() -> None:
    first = customer_upserted(revision=1, name="Anadolu Textiles")
    learn_customer(first, meta_for(first))
    newer = customer_upserted(revision=2, name="Anadolu Textiles A.S.")
    learn_customer(newer, meta_for(newer))

    known = KnownCustomer.objects.get(pk=3)
    assert (known.name, known.revision) == ("Anadolu Textiles A.S.", 2)


def test_an_older_or_repeated_revision_changes_nothing() -> None:
    newer = customer_upserted(revision=3, name="Anadolu Textiles A.S.")
    learn_customer(newer, meta_for(newer))
    for stale in (customer_upserted(revision=2, name="Old name"), customer_upserted(revision=3, name="Same rev")):
        learn_customer(stale, meta_for(stale))

    known = KnownCustomer.objects.get(pk=3)
    assert (known.name, known.revision) == ("Anadolu Textiles A.S.", 3)
