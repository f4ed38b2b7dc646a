"""PDF renditions (services.pdfs): rendered once per version, a re-render is a new version under a new unguessable
name, a renderer that keeps crashing ends `failed`; the chaos switch's leak. The document itself: test_pdf.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.invoicing import pdf
from apps.invoicing.models import Invoice
from apps.invoicing.services.pdfs import invoice_render_pdf, invoice_request_rerender
from tests.invoicing.factories import invoice_for_route

pytestmark = pytest.mark.django_db


def test_a_second_render_of_the_same_version_does_nothing() -> None:
    invoice = invoice_for_route()
    first = invoice_render_pdf(invoice_id=invoice.pk)
    second = invoice_render_pdf(invoice_id=invoice.pk)

    assert second.pdf.name == first.pdf.name
    assert second.pdf_attempts == 1


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


def test_the_chaos_switch_makes_each_render_leak_its_megabytes_and_is_off_by_default(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pdf, "_leaked", [])
    invoice_render_pdf(invoice_id=invoice_for_route(route_id=31).pk)
    assert pdf._leaked == []

    settings.LOGIFLOW_CHAOS_PDF_LEAK_MB = 2
    for route_id in (32, 33):
        invoice_render_pdf(invoice_id=invoice_for_route(route_id=route_id).pk)

    assert [len(block) for block in pdf._leaked] == [2 << 20, 2 << 20]
