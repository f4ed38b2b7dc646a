"""A real `celery -A logiflow worker` process renders the PDFs that issued invoices queued on commit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from apps.common.models import Heartbeat
from apps.contracts import InvoiceGenerated
from apps.invoicing.models import Invoice
from apps.invoicing.services.issuing import RouteToInvoice, invoice_issue_for_routes
from apps.outbox.models import OutboxEvent
from tests.invoicing.factories import BillingAccountFactory, issued_invoice, three_stop_route
from tests.invoicing.test_tasks import pdf_text
from tests.support.processes import wait_until


@pytest.fixture
def celery_worker(subprocess_env: dict[str, str], celery_queue: Path, media_root: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """The worker shares the test's database, queue folder and media root; it runs until the test ends."""
    env = {**subprocess_env, "CELERY_FILESYSTEM_DIR": str(celery_queue), "MEDIA_ROOT": str(media_root),
           "LOG_FORMAT": "json"}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "logiflow", "worker", "--loglevel=INFO", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", f"--hostname=invoicing-test@{tmp_path.name}"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield worker
    worker.terminate()  # warm shutdown
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    log.close()


def rendered_lines(log: Path) -> list[dict]:
    """The worker's JSON lines (not its banner) that say a render task succeeded."""
    lines = [json.loads(line) for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
    return [entry for entry in lines if "render_invoice_pdf" in entry["message"] and "succeeded" in entry["message"]]


def wait_for_pdf(invoice: Invoice, worker: subprocess.Popen, *, timeout: float = 90) -> Invoice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        invoice.refresh_from_db()
        if invoice.pdf_status != Invoice.PdfStatus.PENDING:
            return invoice
        assert worker.poll() is None, "the Celery worker exited"
        time.sleep(0.5)
    return invoice


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_renders_the_pdf_queued_when_the_invoice_was_issued(celery_worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    invoice = issued_invoice(three_stop_route(route_id=41))  # commits; the render task is queued on commit

    invoice = wait_for_pdf(invoice, celery_worker)

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert invoice.pdf_status == Invoice.PdfStatus.RENDERED, log[-3000:]
    assert invoice.pdf_attempts == 1
    text = pdf_text(invoice)
    assert invoice.number in text and "722.95" in text


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_renders_every_pdf_of_a_batch_from_its_one_fan_out_message(celery_worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    BillingAccountFactory()
    issued = invoice_issue_for_routes(routes=[RouteToInvoice(three_stop_route(route_id=r)) for r in (42, 43)])

    rendered = [wait_for_pdf(invoice, celery_worker) for invoice in issued]

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert [invoice.pdf_status for invoice in rendered] == [Invoice.PdfStatus.RENDERED] * 2, log[-3000:]
    assert all(invoice.number in pdf_text(invoice) for invoice in rendered)
    # Each render ran in its invoice's trace (the span that published its InvoiceGenerated), and said so in JSON.
    published = OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type()).values_list("traceparent", flat=True)
    wait_until(lambda: len(rendered_lines(tmp_path / "worker.log")) == 2, timeout=10, explain="the tasks' lines")
    rendering = rendered_lines(tmp_path / "worker.log")
    assert sorted(entry["trace_id"] for entry in rendering) == sorted(tp.split("-")[1] for tp in published), log[-3000:]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_beats_while_it_runs_and_removes_its_heartbeat_when_stopped(  # type: ignore[no-untyped-def]
    celery_worker, tmp_path
) -> None:
    """The filesystem broker answers no `inspect ping` (and the worker runs --without-heartbeat): the dashboard
    learns it is alive from the row it writes itself."""
    log = tmp_path / "worker.log"
    beats = Heartbeat.objects.filter(kind=Heartbeat.Kind.CELERY, pid=celery_worker.pid)
    wait_until(beats.exists, timeout=60, explain=lambda: log.read_text(errors="replace")[-3000:])
    first = beats.get().beat_at
    wait_until(lambda: beats.get().beat_at > first, timeout=30, explain="the worker beat only once")

    celery_worker.terminate()  # warm shutdown
    celery_worker.wait(timeout=20)

    assert not beats.exists(), log.read_text(errors="replace")[-3000:]
