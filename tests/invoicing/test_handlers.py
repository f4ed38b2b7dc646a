"""The `invoicing` group's RouteCalculated handler, called as the consumer runtime calls it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from apps.consumers.registry import EventMeta, NonRetryableError, handler_for
from apps.contracts import RouteCalculated
from apps.invoicing.handlers import MissingBillingData, issue_invoice_for_route
from apps.invoicing.models import Invoice
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
    assert "customer 44 (Ege Foods) has no billing account" in str(raised.value)
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
