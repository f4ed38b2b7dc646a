"""Invoicing's metrics: invoices counted when their transaction commits, PDF renders by outcome and duration."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from apps.invoicing.tasks import PDF_MAX_RETRIES, render_invoice_pdf
from apps.ops.metrics import celery_queue_gauges
from logiflow.celery import app as celery_app
from tests.invoicing.conftest import _drop_connections
from tests.invoicing.factories import issued_invoice, three_stop_route
from tests.invoicing.storages import UNAVAILABLE
from tests.support.metrics import value

pytestmark = pytest.mark.django_db


def test_an_invoice_counts_once_its_transaction_commits(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    before = value("logiflow_invoices_issued_total", kind="invoice")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        issued_invoice(three_stop_route(route_id=71))
    assert value("logiflow_invoices_issued_total", kind="invoice") == before  # not yet committed

    for callback in callbacks:
        callback()

    assert value("logiflow_invoices_issued_total", kind="invoice") == before + 1


def test_renders_count_by_outcome_with_the_duration_of_the_successful_ones(settings: Settings) -> None:
    succeeded = value("logiflow_pdf_renders_total", outcome="succeeded")
    failed = value("logiflow_pdf_renders_total", outcome="failed")
    timed = value("logiflow_pdf_render_duration_seconds_count")
    rendered = issued_invoice(three_stop_route(route_id=72))
    broken = issued_invoice(three_stop_route(route_id=73))

    render_invoice_pdf.apply(args=[rendered.pk])
    settings.STORAGES = {**settings.STORAGES, "default": UNAVAILABLE}
    render_invoice_pdf.apply(args=[broken.pk])  # eager: its retries run in line

    assert value("logiflow_pdf_renders_total", outcome="succeeded") == succeeded + 1
    assert value("logiflow_pdf_renders_total", outcome="failed") == failed + PDF_MAX_RETRIES + 1
    assert value("logiflow_pdf_render_duration_seconds_count") == timed + 1


def test_the_celery_queue_depth_counts_the_renders_waiting(celery_queue) -> None:  # noqa: ANN001
    render_invoice_pdf.delay(1)
    render_invoice_pdf.delay(2)

    families = {family.name: family for family in celery_queue_gauges()}

    depth = {sample.labels["queue"]: sample.value for sample in families["logiflow_celery_queue_messages"].samples}
    assert depth == {"celery": 2}
    assert families["logiflow_celery_broker_up"].samples[0].value == 1


def test_an_unreachable_celery_broker_reports_down_instead_of_failing_the_scrape(celery_queue) -> None:  # noqa: ANN001
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"  # discard port: nothing answers
    _drop_connections()
    try:
        families = {family.name: family for family in celery_queue_gauges(timeout=0.5)}
    finally:
        celery_app.conf.broker_url = previous
        _drop_connections()

    assert "logiflow_celery_queue_messages" not in families
    assert families["logiflow_celery_broker_up"].samples[0].value == 0
