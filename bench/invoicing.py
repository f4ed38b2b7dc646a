"""Invoicing benchmark, run by `make bench` after bench/relay.py. Prints `name=value` lines.

- pdf_task_vs_bare_ratio: throughput of the PDF task path (Celery task → service → DB claim → template →
  WeasyPrint → storage → DB) ÷ throughput of bare WeasyPrint on the same pre-rendered HTML. Target ≥ 0.9.
  The two are interleaved invoice by invoice, so load from other processes hits both alike.

Runs against a throwaway database `bench_<DATABASE name>` created and dropped here (DATABASE_URL names the server).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_scratch = tempfile.TemporaryDirectory(prefix="logiflow-bench-invoicing-")
# Before Django loads settings: PDFs and queued tasks go to scratch folders, not var/.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.test")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # WeasyPrint and Celery log every step at INFO
os.environ["MEDIA_ROOT"] = str(Path(_scratch.name) / "media")
os.environ["CELERY_FILESYSTEM_DIR"] = str(Path(_scratch.name) / "celery")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

PDF_INVOICES = int(os.environ.get("BENCH_PDF_INVOICES", "30"))


def pdf_benchmark(count: int) -> dict[str, float]:
    from apps.invoicing.models import Invoice
    from apps.invoicing.pdf import html_to_pdf, invoice_html
    from apps.invoicing.tasks import render_invoice_pdf
    from tests.invoicing.factories import issued_invoice, three_stop_route

    invoices = [issued_invoice(three_stop_route(route_id=route_id)) for route_id in range(1, count + 2)]
    warm_up, invoices = invoices[0], invoices[1:]
    html_to_pdf(invoice_html(warm_up))  # fonts and WeasyPrint's caches load once, for both paths
    render_invoice_pdf.apply(args=[warm_up.pk], throw=True)

    bare = task = 0.0
    for invoice in invoices:
        html = invoice_html(invoice)
        started = time.perf_counter()
        html_to_pdf(html)
        bare += time.perf_counter() - started
        started = time.perf_counter()
        render_invoice_pdf.apply(args=[invoice.pk], throw=True)
        task += time.perf_counter() - started
    rendered = Invoice.objects.filter(pk__in=[i.pk for i in invoices], pdf_status="rendered").count()
    assert rendered == count, f"only {rendered} of {count} PDFs rendered"
    return {
        "pdf_invoices": count,
        "pdf_bare_renders_per_s": count / bare,
        "pdf_task_renders_per_s": count / task,
        "pdf_task_vs_bare_ratio": bare / task,
    }


def main() -> None:
    database = settings.DATABASES["default"]
    database["TEST"]["NAME"] = f"bench_{database['NAME']}"
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        results = pdf_benchmark(PDF_INVOICES)
    finally:
        teardown_databases(old_config, verbosity=0)
        _scratch.cleanup()
    for name, value in results.items():
        print(f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}")


if __name__ == "__main__":
    main()
