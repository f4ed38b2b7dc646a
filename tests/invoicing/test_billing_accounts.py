"""Billing accounts: changing an account's billing data leaves the invoices already issued with their snapshot."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.invoicing.models import BillingAccount
from apps.invoicing.services.billing_accounts import billing_account_update
from apps.invoicing.services.issuing import invoice_issue_for_route
from tests.invoicing.factories import BillingAccountFactory, three_stop_route

pytestmark = pytest.mark.django_db


def test_later_billing_changes_leave_an_issued_invoice_as_issued() -> None:
    account = BillingAccountFactory()
    invoice = invoice_issue_for_route(route=three_stop_route(route_id=11))
    billing_account_update(account=account, data={"name": "Renamed Ltd.", "rate_per_km": Decimal("9")})

    invoice.refresh_from_db()
    assert (invoice.customer_name, invoice.gross_total) == ("Anadolu Textiles", Decimal("722.95"))
    assert BillingAccount.objects.get().name == "Renamed Ltd."
