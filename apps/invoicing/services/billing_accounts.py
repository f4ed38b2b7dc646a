"""Billing accounts: the billing data and tariff finance keeps per customer of the directory; invoices snapshot
it when they are issued."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.common.errors import ApplicationError
from apps.common.services import model_update
from apps.invoicing.models import BillingAccount, KnownCustomer

BILLING_ACCOUNT_FIELDS = (
    "name", "billing_address", "vat_id", "email", "currency", "rate_per_km", "fee_per_stop", "minimum_charge",
    "fuel_surcharge_percent", "vat_rate_percent", "payment_terms_days",
)



@transaction.atomic
def billing_account_create(*, customer_id: int, **fields: Any) -> BillingAccount:
    """Open the billing account of a customer invoicing knows (from routing's CustomerUpserted)."""
    if BillingAccount.objects.filter(customer_id=customer_id).exists():
        raise ApplicationError(
            f"customer {customer_id} already has a billing account", field="customer_id", code="unique"
        )
    if not KnownCustomer.objects.filter(pk=customer_id).exists():
        raise ApplicationError(
            f"customer {customer_id} is not in the customer directory; routing announces its customers "
            "(manage.py announce_customers re-announces them all)",
            field="customer_id",
        )
    account = BillingAccount(customer_id=customer_id, **_known(fields))
    account.full_clean()
    account.save(force_insert=True)
    return account


@transaction.atomic
def billing_account_update(*, account: BillingAccount, data: dict[str, Any]) -> BillingAccount:
    """Change billing data; invoices already issued keep their snapshot."""
    return model_update(instance=account, fields=BILLING_ACCOUNT_FIELDS, data=_known(data))[0]


def _known(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(BILLING_ACCOUNT_FIELDS)
    if unknown:
        raise ApplicationError(f"unknown billing account fields: {', '.join(sorted(unknown))}")
    return fields
