"""PDF renditions of invoices: renders queued after commit in the trace that issued the invoice, rendered and
stored once per version, failures recorded, re-render on request and a sweep for renders whose task was lost.

Renders are queued by task name (`apps.common.queueing`): the tasks module imports this one, never the reverse.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from apps.common.queueing import enqueue, enqueue_on_commit
from apps.invoicing.models import Invoice
from apps.invoicing.selectors import invoice_ids_pdf_pending

_RENDER_TASK = "apps.invoicing.tasks.render_invoice_pdf"
_FAN_OUT_TASK = "apps.invoicing.tasks.queue_invoice_renders"


# --- Queueing renders -----------------------------------------------------------------------------


def invoice_render_queue_on_commit(invoice_id: int) -> None:
    """Queue the invoice's render when the current transaction commits, in the trace that issued the invoice (on
    commit that span has ended). Sent with `robust=True`: the issue has committed (in a consumer batch, with other
    messages), so a Celery broker outage must not fail it; `invoice_pdf_requeue_stale` catches up."""
    enqueue_on_commit(_RENDER_TASK, invoice_id)


def invoice_renders_queue_on_commit(*, invoice_ids: list[int], traceparents: list[str | None]) -> None:
    """Queue the renders of a batch's invoices with one message on commit (a fan-out task queues one render per
    id, `invoice_renders_queue`): queueing a Celery message costs about a millisecond, per invoice that would
    dominate issuing. Each invoice's trace travels with it, so its render joins the story of its route. The
    fan-out message serves a whole batch, so it resumes no trace: in a consumer batch it is a trace of its own."""
    transaction.on_commit(lambda: enqueue(_FAN_OUT_TASK, invoice_ids, traceparents), robust=True)


def invoice_renders_queue(*, invoice_ids: list[int], traceparents: Sequence[str | None] | None = None) -> int:
    """Queue one render task per invoice id, each in its invoice's trace; returns how many. A repeat is
    harmless: renders are idempotent."""
    traces = list(traceparents or [])
    for n, invoice_id in enumerate(invoice_ids):
        enqueue(_RENDER_TASK, invoice_id, traceparent=traces[n] if n < len(traces) else None)
    return len(invoice_ids)


# --- Rendering ------------------------------------------------------------------------------------


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
    invoice_render_queue_on_commit(invoice.pk)
    return invoice


def invoice_pdf_requeue_stale(*, older_than: timedelta | None = None) -> int:
    """Queue renders for PDFs still pending long after issue (their task was lost: broker down at commit,
    queue purged); returns how many. A duplicate of a live task is harmless, renders are idempotent."""
    age = older_than or timedelta(minutes=settings.INVOICING_PDF_STALE_MINUTES)
    invoice_ids = invoice_ids_pdf_pending(issued_before=timezone.now() - age)
    for invoice_id in invoice_ids:
        enqueue(_RENDER_TASK, invoice_id)
    return len(invoice_ids)
