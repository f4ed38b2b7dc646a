"""The PDF tasks: a valid PDF rendered; failures retried, then visible and re-renderable; lost renders swept up;
a batch fanned out to one render per invoice."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from celery import states
from pypdf import PdfReader

from apps.invoicing.models import Invoice
from apps.invoicing.services.pdfs import invoice_request_rerender
from apps.invoicing.tasks import PDF_MAX_RETRIES, queue_invoice_renders, render_invoice_pdf, requeue_stale_pdfs
from tests.invoicing.conftest import queued_tasks
from tests.invoicing.factories import invoice_for_route
from tests.invoicing.storages import UNAVAILABLE

pytestmark = pytest.mark.django_db


def pdf_text(invoice: Invoice) -> str:
    with invoice.pdf.open("rb") as handle:
        content = handle.read()
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_the_task_stores_a_valid_pdf_showing_number_total_and_stops() -> None:
    invoice = invoice_for_route()
    result = render_invoice_pdf.apply(args=[invoice.pk])

    assert result.state == states.SUCCESS
    invoice.refresh_from_db()
    assert (invoice.pdf_status, invoice.pdf_rendered_version, invoice.pdf_attempts) == ("rendered", 1, 1)
    text = pdf_text(invoice)
    assert invoice.number in text
    assert "722.95" in text
    assert all(stop in text for stop in ("Bursa", "Eskisehir", "Ankara"))


def test_a_failing_render_is_retried_then_shown_as_failed_with_its_error(settings) -> None:  # type: ignore[no-untyped-def]
    invoice = invoice_for_route()
    settings.STORAGES = {**settings.STORAGES, "default": UNAVAILABLE}

    result = render_invoice_pdf.apply(args=[invoice.pk])  # eager: the retries run in line, without the backoff

    assert result.state == states.FAILURE
    invoice.refresh_from_db()
    assert invoice.pdf_attempts == PDF_MAX_RETRIES + 1
    assert invoice.pdf_status == Invoice.PdfStatus.FAILED
    assert "no space left on device" in invoice.pdf_last_error
    assert not invoice.pdf


def test_a_failed_pdf_renders_after_a_rerender_request_once_the_cause_is_fixed(settings) -> None:  # type: ignore[no-untyped-def]
    invoice = invoice_for_route()
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES, "default": UNAVAILABLE}
    render_invoice_pdf.apply(args=[invoice.pk])
    settings.STORAGES = {**settings.STORAGES, "default": default}

    invoice_request_rerender(invoice_id=invoice.pk)
    render_invoice_pdf.apply(args=[invoice.pk])

    invoice.refresh_from_db()
    assert (invoice.pdf_status, invoice.pdf_version, invoice.pdf_rendered_version) == ("rendered", 2, 2)
    assert invoice.pdf_last_error == ""
    assert invoice.number in pdf_text(invoice)


def test_a_render_task_for_an_invoice_that_no_longer_exists_logs_one_line_and_finishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    result = render_invoice_pdf.apply(args=[987654])

    assert result.state == states.SUCCESS  # not FAILURE, and not RETRY: retrying cannot bring it back
    lines = [record for record in caplog.records if record.levelno >= logging.INFO and "987654" in record.getMessage()]
    assert len(lines) == 1, [record.getMessage() for record in caplog.records]
    assert "no longer exists" in lines[0].getMessage()
    assert not any(record.exc_info for record in caplog.records), "no traceback"


def test_a_pdf_whose_task_was_lost_is_queued_again_by_the_periodic_sweep(celery_queue) -> None:  # type: ignore[no-untyped-def]
    lost = invoice_for_route(31)  # in this test's transaction on_commit never runs: its task was never queued
    fresh = invoice_for_route(32)
    Invoice.objects.filter(pk=lost.pk).update(issued_at=lost.issued_at - timedelta(hours=1))

    result = requeue_stale_pdfs.apply()

    assert result.result == 1
    assert queued_tasks(celery_queue) == [("apps.invoicing.tasks.render_invoice_pdf", [lost.pk])]
    assert fresh.pdf_status == Invoice.PdfStatus.PENDING


def test_a_batch_fan_out_queues_one_render_task_per_invoice(celery_queue) -> None:  # type: ignore[no-untyped-def]
    invoices = [invoice_for_route(route_id) for route_id in (31, 32, 33)]

    result = queue_invoice_renders.apply(args=[[invoice.pk for invoice in invoices]])

    assert result.result == 3
    assert sorted(queued_tasks(celery_queue)) == [  # the queue's file names order by milliseconds only
        ("apps.invoicing.tasks.render_invoice_pdf", [invoice.pk]) for invoice in invoices
    ]


@pytest.mark.django_db(transaction=True)
def test_a_celery_broker_outage_at_commit_does_not_undo_or_fail_the_issue(
    celery_queue: Path, caplog: pytest.LogCaptureFixture
) -> None:
    celery_queue.write_text("not a folder")  # the transport cannot create its queue: every publish fails
    invoice = invoice_for_route(33)

    assert Invoice.objects.filter(pk=invoice.pk, pdf_status="pending").exists()
    assert "Error calling" in caplog.text and "on_commit" in caplog.text  # logged, left to the sweep
