"""The invoice PDF as a reader sees it: rendered by WeasyPrint, its text extracted with pypdf."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from apps.contracts import RouteCalculated
from apps.invoicing.models import Invoice
from apps.invoicing.pdf import invoice_context, render_invoice_pdf
from apps.outbox.models import OutboxEvent
from tests.factories import route_calculated
from tests.invoicing.factories import BillingAccountFactory, issued_invoice, three_stop_route
from tests.routing.factories import calculated_route

pytestmark = pytest.mark.django_db


def rendered(invoice: Invoice) -> PdfReader:
    return PdfReader(io.BytesIO(render_invoice_pdf(invoice)))


def text_of(invoice: Invoice) -> str:
    return "\n".join(page.extract_text() for page in rendered(invoice).pages)


def line_of(text: str, starts: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(starts))


def test_units_are_plural_except_for_one() -> None:
    three = text_of(issued_invoice(three_stop_route(route_id=1)))
    one = text_of(issued_invoice(route_calculated(route_id=2)))  # a single stop
    assert "3 stops" in line_of(three, "2 Delivery stops")
    assert "1 stop " in line_of(one, "2 Delivery stops") + " "
    assert "1 stops" not in one


def test_unit_prices_share_one_precision_on_an_invoice() -> None:
    text = text_of(issued_invoice(three_stop_route(route_id=1)))  # 1.2500 per km, 15.00 per stop
    assert line_of(text, "1 Distance").split()[-2:] == ["1.25", "515.43"]
    assert line_of(text, "2 Delivery stops").split()[-2:] == ["15.00", "45.00"]

    BillingAccountFactory(customer_id=4, rate_per_km=Decimal("1.2345"))
    finer = text_of(issued_invoice(three_stop_route(route_id=3, customer_id=4)))
    assert line_of(finer, "1 Distance").split()[-2] == "1.2345"
    assert line_of(finer, "2 Delivery stops").split()[-2] == "15.0000"


def test_the_fuel_surcharge_line_reads_as_a_percentage_of_the_net() -> None:
    text = text_of(issued_invoice(three_stop_route(route_id=1)))  # 7.5% of 515.43 + 45.00
    assert line_of(text, "3 Fuel surcharge") == "3 Fuel surcharge 7.5% of 560.43 42.03"


def test_an_invoice_shows_the_payment_details_from_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.INVOICING_BANK_NAME = "Bosphorus Bank"
    settings.INVOICING_IBAN = "TR33 0006 1005 1978 6457 8413 26"
    text = text_of(issued_invoice(three_stop_route(route_id=1)))
    assert "Bosphorus Bank" in text
    assert "IBAN TR33 0006 1005 1978 6457 8413 26" in text


def test_a_credit_note_has_no_due_date_and_no_payment_details(settings) -> None:  # type: ignore[no-untyped-def]
    settings.INVOICING_BANK_NAME = "Bosphorus Bank"
    issued_invoice(three_stop_route(route_id=1))
    issued_invoice(three_stop_route(route_id=1, calculation=2, distance_km=Decimal("500.000")))
    note = Invoice.objects.get(kind=Invoice.Kind.CREDIT_NOTE)
    invoice_text = text_of(note.credit_for)
    note_text = text_of(note)
    assert "Due " in invoice_text
    assert "Due " not in note_text
    assert "Bosphorus Bank" not in note_text
    assert "with your payment" not in note_text


def test_the_whole_document_uses_one_font_family() -> None:
    reader = rendered(issued_invoice(three_stop_route(route_id=1)))
    families = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            name = str(font.get_object()["/BaseFont"])
            base = re.sub(r"^/?[A-Z]{6}\+", "", name)  # drop the subset tag
            families.add(re.sub(r"-(Bold|Oblique|BoldOblique)$", "", base))
    assert families == {"DejaVu-Sans"}, families


def test_the_route_summary_departs_at_the_routes_planned_departure_not_its_calculation_time() -> None:
    departs_at = datetime(2026, 12, 24, 5, 45, tzinfo=UTC)  # days after the calculation (now)
    route = calculated_route(departs_at=departs_at)
    row = OutboxEvent.objects.get(event_type=RouteCalculated.ce_type())
    invoice = issued_invoice(RouteCalculated.model_validate_json(row.payload))

    assert invoice_context(invoice)["route"]["departs_at"] == route.departs_at
    assert "at 2026-12-24 05:45" in text_of(invoice)
