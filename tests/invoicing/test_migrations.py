"""Billing accounts belong to the customer directory: the migration gives accounts of never-announced customers a
directory entry before the database starts refusing accounts for unknown customers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from apps.invoicing.models import BillingAccount, Invoice, KnownCustomer
from apps.invoicing.services.customers import known_customer_upsert
from tests.invoicing.factories import issued_invoice, three_stop_route
from tests.support.migrations import latest, migrate

BEFORE = [("invoicing", "0005_invoice_number_past_999999")]
AFTER = [("invoicing", "0006_billing_account_customer_directory")]
CREATED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)




def _old_account(cursor: object, customer_id: int, name: str) -> None:
    cursor.execute(  # type: ignore[attr-defined]
        """
        INSERT INTO invoicing_billingaccount (customer_id, name, billing_address, vat_id, email, currency,
            rate_per_km, fee_per_stop, minimum_charge, fuel_surcharge_percent, vat_rate_percent, payment_terms_days,
            created_at, updated_at)
        VALUES (%s, %s, 'Izmir', '', '', 'EUR', 1, 10, 0, 0, 20, 30, %s, %s)
        """,
        [customer_id, name, CREATED, CREATED],
    )


@pytest.mark.django_db(transaction=True)
def test_accounts_of_customers_never_announced_get_a_directory_entry_named_like_the_account() -> None:
    newest = latest("invoicing")
    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO invoicing_knowncustomer (customer_id, name, revision, changed_at, updated_at) "
                "VALUES (71, 'Marmara Glass (routing)', 4, %s, %s)", [CREATED, CREATED],
            )
            _old_account(cursor, 70, "Ege Foods")
            _old_account(cursor, 71, "Marmara Glass")
        migrate(AFTER)
    finally:
        migrate(newest)

    entries = {k.customer_id: (k.name, k.revision, k.changed_at) for k in KnownCustomer.objects.all()}
    assert entries == {70: ("Ege Foods", 0, CREATED), 71: ("Marmara Glass (routing)", 4, CREATED)}
    assert BillingAccount.objects.get(pk=70).customer.name == "Ege Foods"
    # Routing's first announcement (revision 1) replaces the placeholder.
    known_customer_upsert(customer_id=70, name="Ege Foods A.S.", revision=1, changed_at=datetime.now(UTC))
    assert KnownCustomer.objects.get(pk=70).name == "Ege Foods A.S."


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_an_account_for_a_customer_not_in_the_directory() -> None:
    with pytest.raises(IntegrityError, match="invoicing_knowncustomer"), transaction.atomic():
        with connection.cursor() as cursor:
            _old_account(cursor, 72, "Nobody")
    assert not BillingAccount.objects.exists()


@pytest.mark.django_db
def test_an_invoiced_account_keeps_its_column_and_its_invoices() -> None:
    invoice = issued_invoice(three_stop_route(route_id=5))
    with connection.cursor() as cursor:
        cursor.execute("SELECT customer_id FROM invoicing_billingaccount")
        assert cursor.fetchall() == [(invoice.customer_id,)]
    assert Invoice.objects.get().customer.customer.name == "Anadolu Textiles"
