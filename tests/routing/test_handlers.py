"""Routing's consumer of InvoiceGenerated: marks the route invoiced, once, and refuses unknown routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.consumers.registry import EventMeta, NonRetryableError, handler_for
from apps.contracts import InvoiceGenerated
from apps.routing.handlers import mark_route_invoiced
from apps.routing.models import Route
from tests.factories import invoice_generated
from tests.routing.factories import calculated_route


def _meta(event: InvoiceGenerated) -> EventMeta:
    return EventMeta(
        event_id=uuid.uuid4(), ce_type=InvoiceGenerated.ce_type(), source=InvoiceGenerated.ce_source(),
        time=datetime.now(UTC), key=event.partition_key(), traceparent=None, topic=InvoiceGenerated.topic(),
        partition=0, offset=0, group="routing",
    )


def test_routing_group_handles_invoice_generated() -> None:
    registration = handler_for("routing", InvoiceGenerated.ce_type())
    assert registration is not None and registration.handler is mark_route_invoiced


@pytest.mark.django_db
def test_invoice_generated_marks_the_route_invoiced() -> None:
    route = calculated_route()
    event = invoice_generated(route_id=route.pk, number="LF-2026-000007")
    mark_route_invoiced(event, _meta(event))
    route.refresh_from_db()
    assert (route.invoiced, route.invoice_number, route.invoiced_at) == (True, "LF-2026-000007", event.issued_at)


@pytest.mark.django_db
def test_duplicate_invoice_generated_is_a_no_op() -> None:
    route = calculated_route()
    event = invoice_generated(route_id=route.pk)
    mark_route_invoiced(event, _meta(event))
    with CaptureQueriesContext(connection) as queries:
        mark_route_invoiced(event, _meta(event))
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert Route.objects.get().invoice_number == event.number


@pytest.mark.django_db
def test_invoice_for_an_unknown_route_is_a_non_retryable_error() -> None:
    event = invoice_generated(route_id=424242)
    with pytest.raises(NonRetryableError, match="route 424242"):
        mark_route_invoiced(event, _meta(event))
