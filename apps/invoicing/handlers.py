"""Event handlers of the `invoicing` consumer group (discovered by apps.consumers at start-up)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import QueryDict
from django.urls import reverse

from apps.consumers.fixes import FixDone, fix_check
from apps.consumers.registry import EventMeta, Fix, NonRetryableError, handles
from apps.contracts import CustomerUpserted, RouteCalculated
from apps.invoicing.selectors import billing_account_get
from apps.invoicing.services.customers import known_customer_upsert
from apps.invoicing.services.issuing import (
    BillingAccountMissing,
    RouteToInvoice,
    invoice_issue_for_route,
    invoice_issue_for_routes,
)


def billing_account_fix_url(*, customer_id: int) -> str:
    """The page a dead letter of this customer's route names as its fix: the billing account form, prefilled."""
    return f"{reverse('admin:invoicing_billingaccount_add')}?{urlencode({'customer': customer_id})}"


class MissingBillingData(NonRetryableError):
    """The route's customer has no billing account: the message goes to the dead-letter ledger at once, to be
    replayed once finance has added the billing data. The name is quoted (its repr), so log lines and spans can
    leave it out (apps.common.redaction) while the dead-letter row keeps it."""

    def __init__(self, *, customer_id: int, customer_name: str, route_id: int) -> None:
        super().__init__(
            f"cannot invoice route {route_id}: customer {customer_id} {customer_name!r} has no billing account; "
            "add it under Invoicing › Billing accounts, then replay this message",
            fix=Fix(
                label=f"Add billing account for {customer_name}",
                url=billing_account_fix_url(customer_id=customer_id),
            ),
        )
        self.customer_id = customer_id


@fix_check("admin:invoicing_billingaccount_add", permission="invoicing.add_billingaccount")
def billing_account_added(query: QueryDict) -> FixDone | None:
    """MissingBillingData's fix is done once the customer has a billing account."""
    account = billing_account_get(customer_id=int(query["customer"]))
    return FixDone(what=f"the billing account for {account.name}", since=account.created_at) if account else None


def issue_invoices_for_routes(events: list[tuple[RouteCalculated, EventMeta]]) -> None:
    """A consumer batch's new RouteCalculated events at once. A missing billing account raises (the runtime then
    applies the batch message by message, and `issue_invoice_for_route` dead-letters that one message)."""
    invoice_issue_for_routes(
        routes=[RouteToInvoice(route=event, source_event_id=meta.event_id, traceparent=meta.traceparent,
                               source_edit_id=meta.edit_id)
                for event, meta in events]
    )


@handles(RouteCalculated, group="invoicing", batch=issue_invoices_for_routes)
def issue_invoice_for_route(event: RouteCalculated, meta: EventMeta) -> None:
    try:
        invoice_issue_for_route(route=event, source_event_id=meta.event_id, source_edit_id=meta.edit_id)
    except BillingAccountMissing as missing:
        raise MissingBillingData(
            customer_id=missing.customer_id, customer_name=missing.customer_name, route_id=event.route_id
        ) from missing


@handles(CustomerUpserted, group="invoicing")
def learn_customer(event: CustomerUpserted, meta: EventMeta) -> None:
    known_customer_upsert(
        customer_id=event.customer_id, name=event.name, revision=event.revision, changed_at=event.changed_at
    )
