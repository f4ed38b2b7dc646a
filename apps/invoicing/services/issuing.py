"""Issuing invoices for calculated routes, one at a time or a consumer batch at once, and the credit note that
cancels an invoice when its route is recalculated.

Issue rule (documented in docs/architecture.md, "Invoicing"): an invoice is issued — numbered, immutable,
announced by InvoiceGenerated — as soon as its route's RouteCalculated arrives. A newer calculation of the
route cancels the current invoice with a credit note and issues a replacement; an older or equal one is a
duplicate or stale and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from apps import outbox
from apps.common.errors import ApplicationError
from apps.common.metrics import INVOICES_ISSUED
from apps.common.postgres import insert_rows
from apps.common.tracing import current_traceparent, log_context, trace_context
from apps.contracts import InvoiceGenerated, RouteCalculated
from apps.invoicing.models import BillingAccount, Invoice, InvoiceLine
from apps.invoicing.pricing import PricedRoute, Tariff, price_route
from apps.invoicing.selectors import billing_account_get, invoice_current_for_route
from apps.invoicing.services.numbering import allocate_numbers, lock_year
from apps.invoicing.services.pdfs import invoice_render_queue_on_commit, invoice_renders_queue_on_commit

logger = logging.getLogger(__name__)


class BillingAccountMissing(ApplicationError):
    """No billing data for the route's customer yet: only finance can fix this, retrying cannot."""

    def __init__(self, *, customer_id: int, customer_name: str) -> None:
        super().__init__(
            f"no billing account for customer {customer_id} {customer_name!r}; "
            "finance must add its billing data, then replay the message"
        )
        self.customer_id = customer_id
        self.customer_name = customer_name


@transaction.atomic
def invoice_issue_for_route(
    *, route: RouteCalculated, source_event_id: UUID | None = None, source_edit_id: int | None = None
) -> Invoice:
    """Issue (or keep) the invoice for `route`'s calculation; returns the route's current invoice.
    `source_edit_id`: the dead-letter edit `route` came from, when a person edited the event (shown on the invoice).

    Runs inside the consumer's transaction with its inbox row. Idempotent by construction: the same or a
    stale calculation returns the current invoice unchanged, whatever delivered it.
    """
    year = lock_year()
    current = invoice_current_for_route(route_id=route.route_id)
    if current and current.route_calculation >= route.calculation:
        logger.info("route %s calculation %s already invoiced as %s (calculation %s); ignored",
                    route.route_id, route.calculation, current.number, current.route_calculation)
        return current
    if current and billed(current.route_summary) == billed(_route_summary(route)):
        logger.info("route %s calculation %s bills what %s bills (calculation %s); kept",
                    route.route_id, route.calculation, current.number, current.route_calculation)
        return current
    account = billing_account_get(customer_id=route.customer_id)
    if account is None:
        raise BillingAccountMissing(customer_id=route.customer_id, customer_name=route.customer_name)
    if current:
        _credit(current, year=year)
    invoice = _issue(route=route, account=account, year=year, source_event_id=source_event_id,
                     source_edit_id=source_edit_id)
    outbox.publish(_invoice_generated(invoice))
    invoice_render_queue_on_commit(invoice.pk)
    return invoice


@dataclass(frozen=True)
class RouteToInvoice:
    """One delivered calculation for `invoice_issue_for_routes`: the event, its id and its trace parent."""

    route: RouteCalculated
    source_event_id: UUID | None = None
    traceparent: str | None = None
    source_edit_id: int | None = None


@transaction.atomic
def invoice_issue_for_routes(*, routes: Sequence[RouteToInvoice]) -> list[Invoice]:
    """Issue the invoices of several calculations (a consumer batch), in order, with exactly the results of
    `invoice_issue_for_route` called for each; returns each route's current invoice, in order.

    Routes without an invoice yet are issued together: one counter update numbers them all; invoices, lines and
    InvoiceGenerated rows are written with one statement each; their PDFs are queued with one task. A route that
    already has an invoice (in the database or earlier in this batch) takes the single path at its place in the
    order (credit note and replacement, or a stale calculation ignored). Any missing billing account raises:
    nothing is issued.
    """
    year = lock_year()
    route_ids = sorted({item.route.route_id for item in routes})
    invoiced = set(
        Invoice.objects.filter(route_id__in=route_ids, kind=Invoice.Kind.INVOICE)
        .exclude(status=Invoice.Status.CREDITED).values_list("route_id", flat=True)
    )
    accounts = BillingAccount.objects.in_bulk({item.route.customer_id for item in routes})
    issued: list[Invoice] = []
    fresh: list[RouteToInvoice] = []
    for item in routes:
        route = item.route
        if route.route_id in invoiced:
            issued += _issue_fresh(fresh, accounts, year)  # the single path must see the invoices issued before it
            fresh = []
            with _item_context(item):
                issued.append(invoice_issue_for_route(route=route, source_event_id=item.source_event_id,
                                                      source_edit_id=item.source_edit_id))
            continue
        if route.customer_id not in accounts:
            raise BillingAccountMissing(customer_id=route.customer_id, customer_name=route.customer_name)
        fresh.append(item)
        invoiced.add(route.route_id)
    issued += _issue_fresh(fresh, accounts, year)
    return issued


@contextmanager
def _item_context(item: RouteToInvoice) -> Iterator[None]:
    """A span per delivered calculation, named in the logs by its event and route."""
    event_id = str(item.source_event_id) if item.source_event_id else None
    with (
        trace_context(item.traceparent, event_id=event_id, name="invoice_issue"),
        log_context(route_id=item.route.route_id),
    ):
        yield


def _issue_fresh(items: list[RouteToInvoice], accounts: dict[int, BillingAccount], year: int) -> list[Invoice]:
    """First invoices of routes with no invoice: numbered with one counter update, inserted in bulk."""
    if not items:
        return []
    numbers, issued_at = allocate_numbers(year, len(items))
    built = [
        _build_invoice(route=item.route, account=accounts[item.route.customer_id], number=number,
                       issued_at=issued_at, source_event_id=item.source_event_id, source_edit_id=item.source_edit_id)
        for item, number in zip(items, numbers, strict=True)
    ]
    invoices = [invoice for invoice, _ in built]
    insert_rows(invoices)
    insert_rows([line for invoice, priced in built for line in _lines(invoice, priced)])
    traceparents: list[str | None] = []
    for item, invoice in zip(items, invoices, strict=True):
        with _item_context(item), log_context(invoice_id=invoice.pk):  # each continues its route event's trace
            traceparents.append(current_traceparent())
    outbox.publish_many([_invoice_generated(invoice) for invoice in invoices], traceparents=traceparents)
    invoice_ids = [invoice.pk for invoice in invoices]
    invoice_renders_queue_on_commit(invoice_ids=invoice_ids, traceparents=traceparents)
    transaction.on_commit(lambda: INVOICES_ISSUED.labels(Invoice.Kind.INVOICE).inc(len(invoice_ids)), robust=True)
    return invoices


def _issue(
    *, route: RouteCalculated, account: BillingAccount, year: int, source_event_id: UUID | None,
    source_edit_id: int | None,
) -> Invoice:
    [number], issued_at = allocate_numbers(year, 1)
    invoice, priced = _build_invoice(
        route=route, account=account, number=number, issued_at=issued_at, source_event_id=source_event_id,
        source_edit_id=source_edit_id,
    )
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(_lines(invoice, priced))
    transaction.on_commit(lambda: INVOICES_ISSUED.labels(Invoice.Kind.INVOICE).inc(), robust=True)
    return invoice


def _build_invoice(
    *, route: RouteCalculated, account: BillingAccount, number: str, issued_at: datetime,
    source_event_id: UUID | None, source_edit_id: int | None,
) -> tuple[Invoice, PricedRoute]:
    """The unsaved invoice for `route` priced by `account`'s tariff, with its priced lines."""
    priced = price_route(tariff=_tariff(account), distance_km=route.distance_km, stop_count=len(route.stops))
    invoice = Invoice(
        number=number,
        customer=account,
        route_id=route.route_id,
        route_calculation=route.calculation,
        source_event_id=source_event_id,
        source_edit_id=source_edit_id,
        issued_at=issued_at,
        due_date=timezone.localdate(issued_at) + timedelta(days=account.payment_terms_days),
        customer_name=account.name,
        billing_address=account.billing_address,
        vat_id=account.vat_id,
        currency=account.currency,
        vat_rate_percent=account.vat_rate_percent,
        net_total=priced.net_total,
        vat_total=priced.vat_total,
        gross_total=priced.gross_total,
        route_summary=_route_summary(route),
    )
    return invoice, priced


def _lines(invoice: Invoice, priced: PricedRoute) -> list[InvoiceLine]:
    return [
        InvoiceLine(invoice=invoice, position=position, **vars(line))
        for position, line in enumerate(priced.lines, start=1)
    ]


def _credit(invoice: Invoice, *, year: int) -> Invoice:
    """Cancel an issued invoice with a credit note mirroring its lines (negated); it gets its own number."""
    [number], issued_at = allocate_numbers(year, 1)
    note = Invoice.objects.create(
        number=number,
        kind=Invoice.Kind.CREDIT_NOTE,
        credit_for=invoice,
        issued_at=issued_at,
        due_date=timezone.localdate(issued_at),
        **{name: getattr(invoice, name) for name in (
            "customer", "route_id", "route_calculation", "source_event_id", "source_edit_id", "customer_name",
            "billing_address", "vat_id", "currency", "vat_rate_percent", "route_summary",
        )},
        net_total=-invoice.net_total,
        vat_total=-invoice.vat_total,
        gross_total=-invoice.gross_total,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=note, position=line.position, kind=line.kind, description=line.description,
            quantity=line.quantity, unit=line.unit, unit_price=-line.unit_price, amount=-line.amount,
        )
        for line in invoice.lines.all()
    )
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.CREDITED)
    invoice_render_queue_on_commit(note.pk)
    transaction.on_commit(lambda: INVOICES_ISSUED.labels(Invoice.Kind.CREDIT_NOTE).inc(), robust=True)
    return note


def _tariff(account: BillingAccount) -> Tariff:
    return Tariff(
        rate_per_km=account.rate_per_km,
        fee_per_stop=account.fee_per_stop,
        minimum_charge=account.minimum_charge,
        fuel_surcharge_percent=account.fuel_surcharge_percent,
        vat_rate_percent=account.vat_rate_percent,
    )


def _route_summary(route: RouteCalculated) -> dict[str, Any]:
    return route.model_dump(
        mode="json",
        include={
            "truck_plate", "depot", "stops", "distance_km", "duration_minutes", "eta", "calculated_at", "departs_at",
        },
    )


def billed(route_summary: dict[str, Any]) -> tuple[Decimal, list[tuple[str, float, float]]]:
    """What an invoice bills of a route: its distance and its stops (which places, not their order or times).

    A recalculation that bills the same (a truck's new average speed moves only the times) keeps the invoice.
    """
    stops = sorted((stop["name"], stop["lat"], stop["lon"]) for stop in route_summary["stops"])
    return Decimal(route_summary["distance_km"]), stops


def _invoice_generated(invoice: Invoice) -> InvoiceGenerated:
    return InvoiceGenerated(
        invoice_id=invoice.pk,
        number=invoice.number,
        route_id=invoice.route_id,
        customer_id=invoice.customer_id,
        net_total=invoice.net_total,
        vat_total=invoice.vat_total,
        gross_total=invoice.gross_total,
        currency=invoice.currency,
        issued_at=invoice.issued_at,
    )
