"""The PDF task: a valid PDF rendered once per version; failures retried, then visible and re-renderable."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from celery import states
from django.conf import settings
from pypdf import PdfReader

from apps.invoicing import pdf
from apps.invoicing.models import Invoice
from apps.invoicing.services.pdfs import invoice_render_pdf, invoice_request_rerender
from apps.invoicing.tasks import PDF_MAX_RETRIES, queue_invoice_renders, render_invoice_pdf, requeue_stale_pdfs
from tests.invoicing.conftest import queued_tasks
from tests.invoicing.factories import issued_invoice, three_stop_route
from tests.invoicing.storages import UNAVAILABLE

pytestmark = pytest.mark.django_db


def pdf_text(invoice: Invoice) -> str:
    with invoice.pdf.open("rb") as handle:
        content = handle.read()
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def invoice_for_route(route_id: int = 31) -> Invoice:
    return issued_invoice(three_stop_route(route_id=route_id))


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


def test_a_second_render_of_the_same_version_does_nothing() -> None:
    invoice = invoice_for_route()
    first = invoice_render_pdf(invoice_id=invoice.pk)
    second = invoice_render_pdf(invoice_id=invoice.pk)

    assert second.pdf.name == first.pdf.name
    assert second.pdf_attempts == 1


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


def test_a_rerender_replaces_the_previous_file_with_a_new_version() -> None:
    invoice = invoice_for_route()
    first = invoice_render_pdf(invoice_id=invoice.pk)
    invoice_request_rerender(invoice_id=invoice.pk)
    second = invoice_render_pdf(invoice_id=invoice.pk)

    assert second.pdf.name != first.pdf.name
    assert second.pdf.name.endswith("-v2.pdf")


def test_pdf_names_cannot_be_guessed_from_the_invoice_number() -> None:
    invoice = invoice_render_pdf(invoice_id=invoice_for_route().pk)
    name = Path(invoice.pdf.name).name
    assert name.startswith(f"{invoice.number}-") and name != f"{invoice.number}-v1.pdf"
    random_part = name.removeprefix(f"{invoice.number}-").removesuffix("-v1.pdf")
    assert len(random_part) >= 20  # 16 random bytes, URL-safe base64


def test_a_renderer_that_keeps_crashing_its_worker_ends_failed_instead_of_looping() -> None:
    invoice = invoice_for_route()
    # Attempts are counted before each render, so killed renders (time or memory limit) still add up.
    Invoice.objects.filter(pk=invoice.pk).update(
        pdf_attempts=settings.INVOICING_PDF_MAX_ATTEMPTS, pdf_last_error="WorkerLostError"
    )

    invoice = invoice_render_pdf(invoice_id=invoice.pk)

    assert invoice.pdf_status == Invoice.PdfStatus.FAILED
    assert invoice.pdf_last_error.startswith(f"gave up after {settings.INVOICING_PDF_MAX_ATTEMPTS} attempts")
    assert not invoice.pdf


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


def test_the_chaos_switch_makes_each_render_leak_its_megabytes_and_is_off_by_default(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pdf, "_leaked", [])
    invoice_render_pdf(invoice_id=invoice_for_route(route_id=31).pk)
    assert pdf._leaked == []

    settings.LOGIFLOW_CHAOS_PDF_LEAK_MB = 2
    for route_id in (32, 33):
        invoice_render_pdf(invoice_id=invoice_for_route(route_id=route_id).pk)

    assert [len(block) for block in pdf._leaked] == [2 << 20, 2 << 20]
