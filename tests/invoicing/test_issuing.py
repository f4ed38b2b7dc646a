"""Issuing invoices for calculated routes: lines, totals, the outbox event, idempotency, recalculation (credit
notes), renders queued after commit, and a consumer batch issued at once."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.contracts import InvoiceGenerated
from apps.invoicing.models import Invoice, InvoiceNumberCounter
from apps.invoicing.services.issuing import (
    BillingAccountMissing,
    RouteToInvoice,
    invoice_issue_for_route,
    invoice_issue_for_routes,
)
from apps.outbox.models import OutboxEvent
from tests.invoicing.conftest import queued_tasks
from tests.invoicing.factories import BillingAccountFactory, three_stop_route

pytestmark = pytest.mark.django_db


def invoice_events() -> list[dict]:
    rows = OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type()).order_by("id")
    return [json.loads(row.payload) | {"_key": row.key, "_topic": row.topic} for row in rows]


def test_route_calculated_issues_one_invoice_with_hand_computed_lines_and_totals() -> None:
    BillingAccountFactory()
    invoice = invoice_issue_for_route(route=three_stop_route(route_id=11))

    lines = [(line.kind, line.quantity, line.unit_price, line.amount) for line in invoice.lines.all()]
    assert lines == [
        ("distance", Decimal("412.346"), Decimal("1.2500"), Decimal("515.43")),
        ("stops", Decimal("3.000"), Decimal("15.0000"), Decimal("45.00")),
        ("fuel", Decimal("560.430"), Decimal("0.0750"), Decimal("42.03")),
        ("vat", Decimal("602.460"), Decimal("0.2000"), Decimal("120.49")),
    ]
    assert (invoice.net_total, invoice.vat_total, invoice.gross_total) == (
        Decimal("602.46"), Decimal("120.49"), Decimal("722.95"),
    )
    assert invoice.number == f"LF-{invoice.issued_at.year}-000001"
    assert (invoice.route_id, invoice.route_calculation, invoice.customer_id) == (11, 1, 3)
    assert [stop["name"] for stop in invoice.route_summary["stops"]] == ["Bursa", "Eskisehir", "Ankara"]


def test_issuing_writes_invoice_generated_with_the_invoice_fields_to_the_outbox() -> None:
    BillingAccountFactory()
    invoice = invoice_issue_for_route(route=three_stop_route(route_id=11))

    [event] = invoice_events()
    assert event == {
        "invoice_id": invoice.pk,
        "number": invoice.number,
        "route_id": 11,
        "customer_id": 3,
        "net_total": "602.46",
        "vat_total": "120.49",
        "gross_total": "722.95",
        "currency": "EUR",
        "issued_at": invoice.issued_at.isoformat().replace("+00:00", "Z"),
        "_key": "route:11",
        "_topic": "invoicing.events",
    }


def test_the_same_event_twice_leaves_one_invoice_and_one_event() -> None:
    BillingAccountFactory()
    route = three_stop_route(route_id=11)
    first = invoice_issue_for_route(route=route)
    second = invoice_issue_for_route(route=route)

    assert second.pk == first.pk
    assert Invoice.objects.count() == 1
    assert len(invoice_events()) == 1
    assert InvoiceNumberCounter.objects.get().last_number == 1


def test_a_stale_calculation_after_a_newer_one_changes_nothing() -> None:
    BillingAccountFactory()
    newer = invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=3))
    stale = invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=2, distance_km=Decimal("1.000")))

    assert stale.pk == newer.pk
    assert list(Invoice.objects.values_list("route_calculation", "kind")) == [(3, "invoice")]
    assert len(invoice_events()) == 1


def test_a_recalculated_route_credits_the_issued_invoice_and_issues_a_replacement() -> None:
    BillingAccountFactory()
    original = invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=1))
    replacement = invoice_issue_for_route(
        route=three_stop_route(route_id=11, calculation=2, distance_km=Decimal("500.000"))
    )

    original.refresh_from_db()
    note = original.credit_note
    assert original.status == Invoice.Status.CREDITED
    assert note.kind == Invoice.Kind.CREDIT_NOTE
    assert (note.net_total, note.vat_total, note.gross_total) == (
        Decimal("-602.46"), Decimal("-120.49"), Decimal("-722.95"),
    )
    assert sum(line.amount for line in note.lines.all()) == -sum(line.amount for line in original.lines.all())
    # 500 km × 1.25 = 625.00; + 45.00 = 670.00; fuel 50.25; net 720.25; VAT 144.05; gross 864.30.
    assert (replacement.route_calculation, replacement.gross_total) == (2, Decimal("864.30"))
    numbers = [original.number, note.number, replacement.number]
    assert [int(number[-6:]) for number in numbers] == [1, 2, 3]
    assert [event["number"] for event in invoice_events()] == [original.number, replacement.number]


def test_a_route_has_one_current_invoice_even_after_several_recalculations() -> None:
    BillingAccountFactory()
    for calculation in (1, 2, 3, 2, 3):
        distance = Decimal(400 + calculation)  # each calculation bills another distance
        invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=calculation, distance_km=distance))

    current = Invoice.objects.filter(kind="invoice").exclude(status="credited")
    assert list(current.values_list("route_calculation", flat=True)) == [3]
    assert Invoice.objects.filter(kind="credit_note").count() == 2


def test_a_recalculation_that_bills_the_same_keeps_the_invoice_without_a_credit_note() -> None:
    BillingAccountFactory()
    original = invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=1))
    slower = three_stop_route(route_id=11, calculation=2)  # the truck's speed changed: later ETAs, same km and stops
    slower = slower.model_copy(update={
        "stops": [stop.model_copy(update={"eta": stop.eta + timedelta(minutes=40)}) for stop in slower.stops],
        "eta": slower.eta + timedelta(minutes=40), "duration_minutes": slower.duration_minutes + 40,
    })

    kept = invoice_issue_for_route(route=slower)
    again = invoice_issue_for_route(route=slower)  # redelivered

    assert kept.pk == again.pk == original.pk
    assert list(Invoice.objects.values_list("number", "kind", "status")) == [(original.number, "invoice", "issued")]
    assert len(invoice_events()) == 1

    moved = invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=3, distance_km=Decimal("500.000")))
    assert moved.pk != original.pk and moved.route_calculation == 3
    assert Invoice.objects.filter(kind="credit_note", credit_for=original).count() == 1


def test_missing_billing_account_raises_naming_the_customer_and_writes_nothing() -> None:
    with pytest.raises(BillingAccountMissing, match="customer 3 'Anadolu Textiles'"):
        invoice_issue_for_route(route=three_stop_route(route_id=11))

    assert Invoice.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert not InvoiceNumberCounter.objects.filter(last_number__gt=0).exists()


@pytest.mark.django_db(transaction=True)
def test_pdf_render_is_queued_only_after_commit(celery_queue) -> None:  # type: ignore[no-untyped-def]
    BillingAccountFactory()
    with transaction.atomic():
        invoice_issue_for_route(route=three_stop_route(route_id=11))
        assert queued_tasks(celery_queue) == []

    invoice = Invoice.objects.get()
    assert queued_tasks(celery_queue) == [("apps.invoicing.tasks.render_invoice_pdf", [invoice.pk])]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_issue_queues_no_render_and_returns_its_number(celery_queue) -> None:  # type: ignore[no-untyped-def]
    BillingAccountFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_issue_for_route(route=three_stop_route(route_id=11))
        raise RuntimeError("the consumer's transaction failed after the handler")

    assert queued_tasks(celery_queue) == []
    assert invoice_issue_for_route(route=three_stop_route(route_id=12)).number.endswith("-000001")


# --- issuing a consumer batch at once -------------------------------------------------------------------


def documents() -> tuple[list[tuple[Any, ...]], list[dict]]:
    """Everything issuing decides (invoices, credit notes, lines, numbers, events), without ids and timestamps."""
    invoices = Invoice.objects.order_by("number").select_related("credit_for").prefetch_related("lines")
    rows = [
        (
            invoice.number, invoice.kind, invoice.status, invoice.route_id, invoice.route_calculation,
            invoice.customer_id, invoice.source_event_id, invoice.credit_for.number if invoice.credit_for else None,
            invoice.customer_name, invoice.billing_address, invoice.vat_id, invoice.currency,
            invoice.vat_rate_percent, invoice.net_total, invoice.vat_total, invoice.gross_total, invoice.due_date,
            invoice.route_summary, invoice.pdf_status,
            [(line.position, line.kind, line.description, line.quantity, line.unit, line.unit_price, line.amount)
             for line in invoice.lines.all()],
        )
        for invoice in invoices
    ]
    events = [{k: v for k, v in event.items() if k not in ("invoice_id", "issued_at")} for event in invoice_events()]
    return rows, events


def delivered(**route: Any) -> RouteToInvoice:
    return RouteToInvoice(route=three_stop_route(**route), source_event_id=uuid.uuid4())


def test_a_batch_issues_exactly_what_issuing_its_routes_one_by_one_issues() -> None:
    BillingAccountFactory(customer_id=3)
    BillingAccountFactory(customer_id=4, name="Ege Foods", rate_per_km=Decimal("0.3333"), minimum_charge=Decimal("500"),
                          fuel_surcharge_percent=Decimal("0"), vat_rate_percent=Decimal("18"), payment_terms_days=14)
    invoice_issue_for_route(route=three_stop_route(route_id=50))  # issued before the batch arrives
    routes = [
        delivered(route_id=11),
        delivered(route_id=12, customer_id=4, distance_km=Decimal("10.005")),
        delivered(route_id=50, calculation=2, distance_km=Decimal("500.000")),  # recalculation of an issued one
        delivered(route_id=11),  # the same calculation again, another event id: no new document
        delivered(route_id=13),
        delivered(route_id=12, calculation=3, customer_id=4),  # recalculation of one issued in this batch
        delivered(route_id=12, calculation=2, customer_id=4),  # stale: older than the one just issued
        delivered(route_id=14),
    ]
    with transaction.atomic():
        one_by_one = [
            invoice_issue_for_route(route=item.route, source_event_id=item.source_event_id).number for item in routes
        ]
        expected = documents()
        transaction.set_rollback(True)

    batch = invoice_issue_for_routes(routes=routes)

    assert documents() == expected
    assert [invoice.number for invoice in batch] == one_by_one
    numbers = [row[0] for row in expected[0]]
    assert [int(number[-6:]) for number in numbers] == list(range(1, 10))  # 1 before, 6 invoices, 2 credit notes
    assert [row[1] for row in expected[0]].count("credit_note") == 2


def test_a_batch_with_a_customer_without_billing_data_raises_and_issues_nothing() -> None:
    BillingAccountFactory(customer_id=3)
    routes = [delivered(route_id=11), delivered(route_id=12, customer_id=44, customer_name="Ege Foods")]
    with pytest.raises(BillingAccountMissing, match="customer 44 'Ege Foods'"):
        invoice_issue_for_routes(routes=routes)

    assert not Invoice.objects.exists() and invoice_events() == []
    assert invoice_issue_for_route(route=three_stop_route(route_id=13)).number.endswith("-000001")


def test_each_invoice_generated_of_a_batch_continues_the_trace_of_its_own_route_event() -> None:
    BillingAccountFactory()
    parents = [f"00-{trace:032x}-{1:016x}-01" for trace in (1, 2)]
    routes = [RouteToInvoice(route=three_stop_route(route_id=route_id), traceparent=parent)
              for route_id, parent in zip((11, 12), parents, strict=True)]
    invoice_issue_for_routes(routes=routes)

    traceparents = OutboxEvent.objects.order_by("id").values_list("traceparent", flat=True)
    assert [tp.split("-")[1] for tp in traceparents] == [f"{1:032x}", f"{2:032x}"]
    assert all(tp not in parents for tp in traceparents)  # a child span, as the single path makes


@pytest.mark.django_db(transaction=True)
def test_a_batch_queues_its_pdf_renders_with_one_message_after_commit(celery_queue) -> None:  # type: ignore[no-untyped-def]
    BillingAccountFactory()
    with transaction.atomic():
        issued = invoice_issue_for_routes(routes=[delivered(route_id=route_id) for route_id in (11, 12, 13)])
        assert queued_tasks(celery_queue) == []

    [(name, (invoice_ids, traceparents))] = queued_tasks(celery_queue)
    assert (name, invoice_ids) == ("apps.invoicing.tasks.queue_invoice_renders", [i.pk for i in issued])
    # Each render continues its invoice's trace: the span that published its InvoiceGenerated.
    keys = ["route:11", "route:12", "route:13"]
    published = dict(OutboxEvent.objects.filter(key__in=keys).values_list("key", "traceparent"))
    assert traceparents == [published[f"route:{i.route_id}"] for i in issued]


def test_a_batch_of_new_routes_takes_the_same_statements_whatever_its_size() -> None:
    """Per invoice nothing goes to the database alone: numbering, invoices, lines and InvoiceGenerated rows are each
    one statement for the whole batch."""
    BillingAccountFactory()
    invoice_issue_for_route(route=three_stop_route(route_id=1))  # the year's counter exists
    statements = []
    for route_ids in ((11, 12), (21, 22, 23, 24, 25, 26)):
        with CaptureQueriesContext(connection) as queries:
            invoice_issue_for_routes(routes=[delivered(route_id=route_id) for route_id in route_ids])
        statements.append(len(queries))

    assert statements[0] == statements[1]
    assert Invoice.objects.count() == 9 and len(invoice_events()) == 9
