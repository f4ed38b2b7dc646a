"""Invoicing use cases: billing accounts, issuing invoices for calculated routes, PDF renditions, delivery.

Issue rule (documented in docs/architecture.md, "Invoicing"): an invoice is issued — numbered, immutable,
announced by InvoiceGenerated — as soon as its route's RouteCalculated arrives. A newer calculation of the
route cancels the current invoice with a credit note and issues a replacement; an older or equal one is a
duplicate or stale and changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone

from apps import outbox
from apps.common.errors import ApplicationError
from apps.common.metrics import INVOICES_ISSUED
from apps.common.services import model_update
from apps.common.tracing import current_traceparent, log_context, resumed, trace_context
from apps.contracts import InvoiceGenerated, RouteCalculated
from apps.invoicing.models import BillingAccount, Invoice, InvoiceLine, InvoiceNumberCounter, KnownCustomer
from apps.invoicing.pricing import PricedRoute, Tariff, price_route
from apps.invoicing.selectors import billing_account_get, invoice_current_for_route, invoice_ids_pdf_pending

logger = logging.getLogger(__name__)

BILLING_ACCOUNT_FIELDS = (
    "name", "billing_address", "vat_id", "email", "currency", "rate_per_km", "fee_per_stop", "minimum_charge",
    "fuel_surcharge_percent", "vat_rate_percent", "payment_terms_days",
)


class BillingAccountMissing(ApplicationError):
    """No billing data for the route's customer yet: only finance can fix this, retrying cannot."""

    def __init__(self, *, customer_id: int, customer_name: str) -> None:
        super().__init__(
            f"no billing account for customer {customer_id} ({customer_name}); "
            "finance must add its billing data, then replay the message"
        )
        self.customer_id = customer_id
        self.customer_name = customer_name


# --- Customer directory ---------------------------------------------------------------------------


@transaction.atomic
def known_customer_upsert(*, customer_id: int, name: str, revision: int, changed_at: datetime) -> KnownCustomer:
    """Learn a customer (or a newer revision of it) from routing. Idempotent: a repeated or older revision changes
    nothing, so redelivery and re-announcement are harmless and out-of-order events cannot undo a newer name."""
    known = KnownCustomer.objects.select_for_update().filter(pk=customer_id).first()
    if known is None:
        # A concurrent first insert of the same customer is absorbed by the conflict clause, then re-read locked.
        KnownCustomer.objects.bulk_create(
            [KnownCustomer(customer_id=customer_id, name=name, revision=revision, changed_at=changed_at)],
            ignore_conflicts=True,
        )
        known = KnownCustomer.objects.select_for_update().get(pk=customer_id)
        if known.revision == revision and known.name == name:
            return known
    if known.revision >= revision:
        logger.info("customer %s revision %s already known at revision %s; ignored",
                    customer_id, revision, known.revision)
        return known
    known.name, known.revision, known.changed_at = name, revision, changed_at
    known.save(update_fields=["name", "revision", "changed_at", "updated_at"])
    return known


# --- Billing accounts -----------------------------------------------------------------------------


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


# --- Issuing --------------------------------------------------------------------------------------


@transaction.atomic
def invoice_issue_for_route(*, route: RouteCalculated, source_event_id: UUID | None = None) -> Invoice:
    """Issue (or keep) the invoice for `route`'s calculation; returns the route's current invoice.

    Runs inside the consumer's transaction with its inbox row. Idempotent by construction: the same or a
    stale calculation returns the current invoice unchanged, whatever delivered it.
    """
    year = _lock_numbering()
    current = invoice_current_for_route(route_id=route.route_id)
    if current and current.route_calculation >= route.calculation:
        logger.info("route %s calculation %s already invoiced as %s (calculation %s); ignored",
                    route.route_id, route.calculation, current.number, current.route_calculation)
        return current
    account = billing_account_get(customer_id=route.customer_id)
    if account is None:
        raise BillingAccountMissing(customer_id=route.customer_id, customer_name=route.customer_name)
    if current:
        _credit(current, year=year)
    invoice = _issue(route=route, account=account, year=year, source_event_id=source_event_id)
    outbox.publish(_invoice_generated(invoice))
    _render_on_commit(invoice.pk)
    return invoice


@dataclass(frozen=True)
class RouteToInvoice:
    """One delivered calculation for `invoice_issue_for_routes`: the event, its id and its trace parent."""

    route: RouteCalculated
    source_event_id: UUID | None = None
    traceparent: str | None = None


@transaction.atomic
def invoice_issue_for_routes(*, routes: Sequence[RouteToInvoice]) -> list[Invoice]:
    """Issue the invoices of several calculations (a consumer batch), in order, with exactly the results of
    `invoice_issue_for_route` called for each; returns each route's current invoice, in order.

    Routes without an invoice yet are issued together: one counter update numbers them all, invoices and
    lines are bulk-inserted, their PDFs are queued with one task. A route that already has an invoice (in the
    database or earlier in this batch) takes the single path at its place in the order (credit note and
    replacement, or a stale calculation ignored). Any missing billing account raises: nothing is issued.
    """
    year = _lock_numbering()
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
                issued.append(invoice_issue_for_route(route=route, source_event_id=item.source_event_id))
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
    with trace_context(item.traceparent, event_id=event_id, name="invoice_issue"), log_context(route_id=item.route.route_id):
        yield


def _issue_fresh(items: list[RouteToInvoice], accounts: dict[int, BillingAccount], year: int) -> list[Invoice]:
    """First invoices of routes with no invoice: numbered with one counter update, inserted in bulk."""
    if not items:
        return []
    numbers, issued_at = _allocate_numbers(year, len(items))
    built = [
        _build_invoice(route=item.route, account=accounts[item.route.customer_id], number=number,
                       issued_at=issued_at, source_event_id=item.source_event_id)
        for item, number in zip(items, numbers, strict=True)
    ]
    invoices = Invoice.objects.bulk_create([invoice for invoice, _ in built], batch_size=1000)
    InvoiceLine.objects.bulk_create(
        [line for invoice, priced in built for line in _lines(invoice, priced)], batch_size=1000
    )
    traceparents: list[str | None] = []
    for item, invoice in zip(items, invoices, strict=True):
        with _item_context(item), log_context(invoice_id=invoice.pk):  # as the consumer runs a single handler
            outbox.publish(_invoice_generated(invoice))
            traceparents.append(current_traceparent())
    invoice_ids = [invoice.pk for invoice in invoices]
    transaction.on_commit(lambda: _schedule_renders(invoice_ids, traceparents), robust=True)
    transaction.on_commit(lambda: INVOICES_ISSUED.labels(Invoice.Kind.INVOICE).inc(len(invoice_ids)), robust=True)
    return invoices


def _issue(*, route: RouteCalculated, account: BillingAccount, year: int, source_event_id: UUID | None) -> Invoice:
    [number], issued_at = _allocate_numbers(year, 1)
    invoice, priced = _build_invoice(
        route=route, account=account, number=number, issued_at=issued_at, source_event_id=source_event_id,
    )
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(_lines(invoice, priced))
    transaction.on_commit(lambda: INVOICES_ISSUED.labels(Invoice.Kind.INVOICE).inc(), robust=True)
    return invoice


def _build_invoice(
    *, route: RouteCalculated, account: BillingAccount, number: str, issued_at: datetime,
    source_event_id: UUID | None,
) -> tuple[Invoice, PricedRoute]:
    """The unsaved invoice for `route` priced by `account`'s tariff, with its priced lines."""
    priced = price_route(tariff=_tariff(account), distance_km=route.distance_km, stop_count=len(route.stops))
    invoice = Invoice(
        number=number,
        customer=account,
        route_id=route.route_id,
        route_calculation=route.calculation,
        source_event_id=source_event_id,
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
    [number], issued_at = _allocate_numbers(year, 1)
    note = Invoice.objects.create(
        number=number,
        kind=Invoice.Kind.CREDIT_NOTE,
        credit_for=invoice,
        issued_at=issued_at,
        due_date=timezone.localdate(issued_at),
        **{name: getattr(invoice, name) for name in (
            "customer", "route_id", "route_calculation", "source_event_id", "customer_name", "billing_address",
            "vat_id", "currency", "vat_rate_percent", "route_summary",
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
    _render_on_commit(note.pk)
    transaction.on_commit(lambda: INVOICES_ISSUED.labels(Invoice.Kind.CREDIT_NOTE).inc(), robust=True)
    return note


def _lock_numbering() -> int:
    """Lock this year's number counter (created if missing) and return the year. Every issuing path calls this
    first: numbers are gapless, so issuing is serialised per year by this row anyway, and holding it before
    the "does the route have an invoice?" check also serialises two calculations of one route that arrive on
    different partitions (the key is the truck), each seeing the other's result. One row lock, whatever the
    batch size: a lock per route took 500 of PostgreSQL's shared lock table entries per consumer batch."""
    year = timezone.now().year
    _lock_counter(year)
    return year


def _lock_counter(year: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_COUNTER, [year])
        if cursor.fetchone() is None:  # the year's first invoice; a concurrent first one is absorbed by the conflict
            InvoiceNumberCounter.objects.bulk_create([InvoiceNumberCounter(year=year)], ignore_conflicts=True)
            cursor.execute(_LOCK_COUNTER, [year])


def _allocate_numbers(year: int, count: int) -> tuple[list[str], datetime]:
    """The next `count` gapless numbers and their issue time, under `year`'s counter lock (`_lock_numbering`),
    which the issuing transaction keeps to its end: numbers are unique, a rollback takes them back, and the
    time is read only once the lock is ours, so a higher number never carries an earlier time."""
    last, issued_at = _add_to_counter(year, count)
    if issued_at.year != year:
        # The year turned while we waited for its counter. We still hold the row, so these are its last
        # numbers: give them back and number in the year of the issue time.
        _add_to_counter(year, -count)
        year = issued_at.year
        _lock_counter(year)
        last, issued_at = _add_to_counter(year, count)
    return [_number(year, sequence) for sequence in range(last - count + 1, last + 1)], issued_at


def _add_to_counter(year: int, count: int) -> tuple[int, datetime]:
    """The counter's new last number and the database's clock, read after the update (so after the lock)."""
    with connection.cursor() as cursor:
        cursor.execute(_ADD_TO_COUNTER, [count, year])
        return cursor.fetchone()


def _number(year: int, sequence: int) -> str:
    """`LF-YYYY-NNNNNN`: six digits at least, a seventh from the millionth invoice of a year (sort with
    `models.NUMBER_ORDER`). Numbers already issued keep their form."""
    return f"LF-{year:04d}-{sequence:06d}"


_COUNTER_TABLE = InvoiceNumberCounter._meta.db_table
_LOCK_COUNTER = f"SELECT last_number FROM {_COUNTER_TABLE} WHERE year = %s FOR UPDATE"
_ADD_TO_COUNTER = (
    f"UPDATE {_COUNTER_TABLE} SET last_number = last_number + %s WHERE year = %s RETURNING last_number, clock_timestamp()"
)


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
        include={"truck_plate", "depot", "stops", "distance_km", "duration_minutes", "eta", "calculated_at"},
    )


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


def _schedule_renders(invoice_ids: list[int], traceparents: list[str | None]) -> None:
    """Queue the renders of a batch's invoices with one message (a fan-out task queues one render per id):
    queueing a Celery message costs about a millisecond, per invoice that would dominate issuing. Each
    invoice's trace travels with it, so its render joins the story of its route."""
    from apps.invoicing.tasks import queue_invoice_renders

    queue_invoice_renders.delay(invoice_ids, traceparents)


def invoice_renders_queue(*, invoice_ids: list[int], traceparents: Sequence[str | None] | None = None) -> int:
    """Queue one render task per invoice id, each in its invoice's trace; returns how many. A repeat is
    harmless: renders are idempotent."""
    traces = list(traceparents or [])
    for n, invoice_id in enumerate(invoice_ids):
        _schedule_render(invoice_id, traceparent=traces[n] if n < len(traces) else None)
    return len(invoice_ids)


def _render_on_commit(invoice_id: int) -> None:
    traceparent = current_traceparent()  # the span ends before the commit: keep its id for the render task
    transaction.on_commit(lambda: _schedule_render(invoice_id, traceparent=traceparent), robust=True)


def _schedule_render(invoice_id: int, *, traceparent: str | None = None) -> None:
    """Queue the render, in the trace that issued the invoice (on commit that span has ended). Called on commit
    with `robust=True`: the issue has committed (in a consumer batch, with other messages), so a Celery broker
    outage must not fail it; `invoice_pdf_requeue_stale` catches up."""
    from apps.invoicing.tasks import render_invoice_pdf  # tasks import services; import here breaks the cycle

    with resumed(traceparent):
        render_invoice_pdf.delay(invoice_id)


# --- Delivery -------------------------------------------------------------------------------------


@transaction.atomic
def invoice_mark_sent(*, invoice_id: int) -> Invoice:
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status == Invoice.Status.SENT:
        return invoice
    if invoice.status != Invoice.Status.ISSUED:
        raise ApplicationError(f"{invoice.number} is {invoice.get_status_display().lower()}; it cannot be sent")
    invoice.status = Invoice.Status.SENT
    invoice.sent_at = timezone.now()
    invoice.save(update_fields=["status", "sent_at"])
    return invoice


# --- PDF rendition --------------------------------------------------------------------------------


def invoice_render_pdf(*, invoice_id: int) -> Invoice:
    """Render and store the PDF of the invoice's wanted version, once: a duplicate or late call is a no-op.

    Deliberately not one transaction: rendering is slow and must not hold the invoice's row lock. The attempt
    is counted and committed first, so a renderer that crashes or is killed (time limit, memory limit) still
    uses up attempts and the invoice ends `failed` instead of looping for ever.
    """
    claimed = _claim_render(invoice_id)
    if claimed is None:
        return Invoice.objects.get(pk=invoice_id)
    from apps.invoicing.pdf import render_invoice_pdf  # WeasyPrint loads slowly; only renderers need it

    return _store_pdf(invoice_id=invoice_id, version=claimed.pdf_version, content=render_invoice_pdf(claimed))


@transaction.atomic
def _claim_render(invoice_id: int) -> Invoice | None:
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.pdf_rendered_version >= invoice.pdf_version:
        return None
    if invoice.pdf_attempts >= settings.INVOICING_PDF_MAX_ATTEMPTS:
        invoice.pdf_status = Invoice.PdfStatus.FAILED
        invoice.pdf_last_error = f"gave up after {invoice.pdf_attempts} attempts; last error: {invoice.pdf_last_error}"
        invoice.save(update_fields=["pdf_status", "pdf_last_error"])
        return None
    invoice.pdf_attempts += 1
    invoice.save(update_fields=["pdf_attempts"])
    return invoice


@transaction.atomic
def _store_pdf(*, invoice_id: int, version: int, content: bytes) -> Invoice:
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.pdf_rendered_version >= version:
        return invoice  # a concurrent render of this version won
    previous = invoice.pdf.name
    # A name nobody can guess, should the storage ever be exposed: the number alone would enumerate them all.
    invoice.pdf.save(f"{invoice.number}-{secrets.token_urlsafe(16)}-v{version}.pdf", ContentFile(content), save=False)
    invoice.pdf_rendered_version = version
    if invoice.pdf_version == version:
        invoice.pdf_status = Invoice.PdfStatus.RENDERED
        invoice.pdf_last_error = ""
    invoice.save(update_fields=["pdf", "pdf_rendered_version", "pdf_status", "pdf_last_error"])
    if previous:
        storage = invoice.pdf.storage
        transaction.on_commit(lambda: storage.delete(previous), robust=True)
    return invoice


@transaction.atomic
def invoice_pdf_render_failed(*, invoice_id: int, error: str, final: bool) -> Invoice:
    """Record a failed render; `final` (no retries left) makes the failure visible as `failed`."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    invoice.pdf_last_error = error[:2000]
    fields = ["pdf_last_error"]
    if final and invoice.pdf_rendered_version < invoice.pdf_version:
        invoice.pdf_status = Invoice.PdfStatus.FAILED
        fields.append("pdf_status")
    invoice.save(update_fields=fields)
    return invoice


@transaction.atomic
def invoice_request_rerender(*, invoice_id: int) -> Invoice:
    """Ask for a fresh rendition (after a failure, a template change or a lost file): a new version."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    invoice.pdf_version += 1
    invoice.pdf_status = Invoice.PdfStatus.PENDING
    invoice.pdf_attempts = 0
    invoice.pdf_last_error = ""
    invoice.save(update_fields=["pdf_version", "pdf_status", "pdf_attempts", "pdf_last_error"])
    _render_on_commit(invoice.pk)
    return invoice


def invoice_pdf_requeue_stale(*, older_than: timedelta | None = None) -> int:
    """Queue renders for PDFs still pending long after issue (their task was lost: broker down at commit,
    queue purged); returns how many. A duplicate of a live task is harmless, renders are idempotent."""
    age = older_than or timedelta(minutes=settings.INVOICING_PDF_STALE_MINUTES)
    invoice_ids = invoice_ids_pdf_pending(issued_before=timezone.now() - age)
    for invoice_id in invoice_ids:
        _schedule_render(invoice_id)
    return len(invoice_ids)
