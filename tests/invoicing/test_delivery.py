"""Delivery: an issued invoice is marked sent once; a credited one cannot be sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.invoicing.models import Invoice
from apps.invoicing.services.delivery import invoice_mark_sent
from apps.invoicing.services.issuing import invoice_issue_for_route
from tests.invoicing.factories import BillingAccountFactory, three_stop_route

pytestmark = pytest.mark.django_db


def test_mark_sent_moves_an_issued_invoice_to_sent_and_refuses_a_credited_one() -> None:
    BillingAccountFactory()
    original = invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=1))
    invoice_issue_for_route(route=three_stop_route(route_id=11, calculation=2, distance_km=Decimal("500.000")))

    with pytest.raises(Exception, match="credited; it cannot be sent"):
        invoice_mark_sent(invoice_id=original.pk)
    replacement = Invoice.objects.get(route_calculation=2, kind="invoice")
    sent = invoice_mark_sent(invoice_id=replacement.pk)
    assert sent.status == Invoice.Status.SENT and sent.sent_at is not None
