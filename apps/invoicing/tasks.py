"""Celery tasks of invoicing: thin, they take an invoice id and call a service."""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from django.core.exceptions import ObjectDoesNotExist

from apps.common.metrics import PDF_RENDER_SECONDS, PDF_RENDERS
from apps.common.tracing import log_context
from apps.invoicing.models import Invoice
from apps.invoicing.services.pdfs import (
    invoice_pdf_render_failed,
    invoice_pdf_requeue_stale,
    invoice_render_pdf,
    invoice_renders_queue,
)

logger = logging.getLogger(__name__)
PDF_MAX_RETRIES = 5


@shared_task(
    bind=True,
    autoretry_for=(Exception,),
    dont_autoretry_for=(ObjectDoesNotExist,),  # no such invoice: retrying cannot help
    max_retries=PDF_MAX_RETRIES,
    retry_backoff=2,  # 2, 4, 8, 16, 32 s (full jitter), capped below
    retry_backoff_max=300,
    retry_jitter=True,
    # A render takes well under a second; these only stop a renderer that hangs. The soft limit raises
    # inside the task (recorded and retried); the hard limit kills the child process.
    soft_time_limit=60,
    time_limit=90,
    acks_late=True,
)
def render_invoice_pdf(self: Task, invoice_id: int) -> None:
    """Render the invoice's PDF; each failure is recorded, and after the last retry the invoice shows `failed`
    (re-render from the admin). An invoice deleted before (or while) its task ran is not an error: one line."""
    with log_context(invoice_id=invoice_id):
        _render(self, invoice_id)


def _render(task: Task, invoice_id: int) -> None:
    started = time.monotonic()
    try:
        invoice_render_pdf(invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        _gone(invoice_id)
    except ObjectDoesNotExist:
        raise
    except Exception as error:
        PDF_RENDERS.labels("failed").inc()
        final = task.request.retries >= task.max_retries
        try:
            invoice_pdf_render_failed(invoice_id=invoice_id, error=f"{type(error).__name__}: {error}", final=final)
        except Invoice.DoesNotExist:
            _gone(invoice_id)
            return
        raise
    else:
        PDF_RENDER_SECONDS.observe(time.monotonic() - started)
        PDF_RENDERS.labels("succeeded").inc()


def _gone(invoice_id: int) -> None:
    logger.info("invoice %s no longer exists; its PDF render is dropped", invoice_id)


@shared_task(autoretry_for=(Exception,), max_retries=5, retry_backoff=2, retry_backoff_max=300, retry_jitter=True)
def queue_invoice_renders(invoice_ids: list[int], traceparents: list[str | None] | None = None) -> int:
    """Fan-out for a consumer batch's invoices: one `render_invoice_pdf` per id, so each keeps its own retries
    (and its invoice's trace). A retry after a partial fan-out queues some renders twice, which is harmless
    (renders are idempotent)."""
    return invoice_renders_queue(invoice_ids=invoice_ids, traceparents=traceparents)


@shared_task
def requeue_stale_pdfs() -> int:
    """Periodic (beat): queue renders whose task was lost, e.g. the Celery broker was down at commit."""
    return invoice_pdf_requeue_stale()
