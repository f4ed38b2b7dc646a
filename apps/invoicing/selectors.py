"""Read-side queries of invoicing; the API and the admin read through these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, QuerySet

from apps.invoicing.models import BillingAccount, Invoice


def invoice_list() -> QuerySet[Invoice]:
    return Invoice.objects.select_related("credit_for").prefetch_related("lines")


def invoice_get(*, invoice_id: int) -> Invoice | None:
    return invoice_list().filter(pk=invoice_id).first()


def invoice_current_for_route(*, route_id: int) -> Invoice | None:
    """The route's invoice that is in force (not cancelled by a credit note); at most one by constraint.

    Unordered on purpose: with the model's ordering (-issued_at) PostgreSQL may walk the issued_at index
    instead of looking the route up, which gets slower with every invoice issued.
    """
    current = Invoice.objects.filter(route_id=route_id, kind=Invoice.Kind.INVOICE).exclude(
        status=Invoice.Status.CREDITED
    )
    return next(iter(current.order_by()[:1]), None)


def invoice_ids_pdf_pending(*, issued_before: datetime) -> list[int]:
    return list(
        Invoice.objects.filter(pdf_status=Invoice.PdfStatus.PENDING, issued_at__lt=issued_before)
        .order_by("id")
        .values_list("id", flat=True)
    )


def billing_account_list() -> QuerySet[BillingAccount]:
    return BillingAccount.objects.all()


def billing_account_get(*, customer_id: int) -> BillingAccount | None:
    return BillingAccount.objects.filter(customer_id=customer_id).order_by().first()


def invoice_pdf_failed_count() -> int:
    """Invoices whose PDF rendering gave up: finance re-renders them."""
    return Invoice.objects.filter(pdf_status=Invoice.PdfStatus.FAILED).count()


@dataclass(frozen=True)
class PdfQueue:
    """PDF renders not done yet (rendered by Celery workers): how many, and when the oldest one's invoice was
    issued (None: none waits)."""

    pending: int
    oldest_issued_at: datetime | None


def invoice_pdf_queue() -> PdfQueue:
    """The renders waiting, read from the invoices (partial index on pending ones), not from the Celery broker:
    a lost task is still a render nobody has done."""
    row = Invoice.objects.filter(pdf_status=Invoice.PdfStatus.PENDING).order_by().aggregate(
        pending=Count("id"), oldest=Min("issued_at")
    )
    return PdfQueue(pending=row["pending"], oldest_issued_at=row["oldest"])
