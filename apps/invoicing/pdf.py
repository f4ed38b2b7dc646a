"""The invoice PDF: a Django template rendered to HTML, then to PDF by WeasyPrint.

Kept apart from the services so the benchmark can time the bare HTML → PDF step against the whole task.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from apps.invoicing.models import Invoice, InvoiceLine

TEMPLATE = "invoicing/invoice.html"
logger = logging.getLogger(__name__)
# What the chaos run's leaking renderer keeps alive in this process (see `_leak_for_chaos`).
_leaked: list[bytes] = []
# The only files a render may read: fonts, logos or stylesheets shipped with the invoice template.
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# Units that are words take a plural ("3 stops"); symbols such as "km" never do.
PLURAL_UNITS = {"stop": "stops"}
# Unit prices are printed with at least cents and at most the stored precision, the same for every line.
MIN_PRICE_PLACES, MAX_PRICE_PLACES = 2, 4


class BundledAssetsOnly(URLFetcher):
    """WeasyPrint's fetcher limited to the bundled assets: no network, no other file, whatever the HTML says.

    Invoice HTML carries customer-supplied text (names, stop names); a URL slipped into it must not make the
    renderer call out or read the server's files.
    """

    def fetch(self, url: str, headers: dict | None = None) -> Any:
        path = bundled_asset(url)
        if path is None:
            raise ValueError(f"refused to fetch {url[:200]!r}: an invoice may load only its bundled assets")
        return super().fetch(path.as_uri(), headers)


def bundled_asset(url: str) -> Path | None:
    """The file under ASSETS_DIR that `url` names, or None for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parts.path)).resolve()
    return path if path.is_relative_to(ASSETS_DIR) and path.is_file() else None


@dataclass(frozen=True)
class PrintedLine:
    """A net line as printed: quantity with its unit (or the percentage a surcharge takes) and a unit price."""

    position: int
    description: str
    quantity: str
    unit_price: str
    amount: Decimal


def printed_lines(lines: list[InvoiceLine]) -> list[PrintedLine]:
    """The net lines as the PDF shows them; a fuel surcharge reads "7.5% of 560.43" with no unit price."""
    priced = [line for line in lines if line.kind != InvoiceLine.Kind.FUEL]
    places = max([MIN_PRICE_PLACES, *(_places(line.unit_price) for line in priced)])
    return [
        # The rate is in the quantity column ("7.5% of 560.43"), so the description need not repeat it.
        PrintedLine(line.position, InvoiceLine.Kind.FUEL.label, _percentage_of(line), "", line.amount)
        if line.kind == InvoiceLine.Kind.FUEL
        else PrintedLine(line.position, line.description, _quantity(line), f"{line.unit_price:.{places}f}", line.amount)
        for line in lines
    ]


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return min(MAX_PRICE_PLACES, max(0, -exponent)) if isinstance(exponent, int) else MAX_PRICE_PLACES


def _quantity(line: InvoiceLine) -> str:
    quantity = f"{line.quantity.normalize():f}"
    unit = PLURAL_UNITS.get(line.unit, line.unit) if line.quantity != 1 else line.unit
    return f"{quantity} {unit}".strip()


def _percentage_of(line: InvoiceLine) -> str:
    # Stored as quantity = the net it applies to, unit price = the rate (negated on a credit note).
    percent = (abs(line.unit_price) * 100).normalize()
    return f"{percent:f}% of {line.quantity:.2f}"


def invoice_context(invoice: Invoice) -> dict[str, Any]:
    lines = list(invoice.lines.all())
    summary = invoice.route_summary
    is_invoice = invoice.kind == Invoice.Kind.INVOICE
    return {
        "issuer": settings.INVOICING_ISSUER,
        # A credit note is not paid: it has neither a due date nor payment details.
        "payment": {"bank_name": settings.INVOICING_BANK_NAME, "iban": settings.INVOICING_IBAN} if is_invoice else None,
        "is_invoice": is_invoice,
        "invoice": invoice,
        "net_lines": printed_lines([line for line in lines if line.kind != InvoiceLine.Kind.VAT]),
        "vat_lines": [line for line in lines if line.kind == InvoiceLine.Kind.VAT],
        "route": {
            **summary,
            "eta": _when(summary.get("eta")),
            "calculated_at": _when(summary.get("calculated_at")),
            # Invoices issued from events that predate `departs_at` print no departure rather than a wrong one.
            "departs_at": _when(summary.get("departs_at")),
            "stops": [{**stop, "eta": _when(stop["eta"])} for stop in summary.get("stops", [])],
        },
    }


def invoice_html(invoice: Invoice) -> str:
    """The document's HTML, its times in the site's zone (named): a document sent to a customer reads the same
    whoever had it rendered (the Celery worker, or a request in a reader's own zone)."""
    with timezone.override(settings.TIME_ZONE):
        return render_to_string(TEMPLATE, invoice_context(invoice))


def html_to_pdf(html: str) -> bytes:
    return HTML(string=html, base_url=ASSETS_DIR.as_uri() + "/", url_fetcher=BundledAssetsOnly()).write_pdf()


def render_invoice_pdf(invoice: Invoice) -> bytes:
    _leak_for_chaos()
    return html_to_pdf(invoice_html(invoice))


def _leak_for_chaos() -> None:
    """`make chaos` only (LOGIFLOW_CHAOS_PDF_LEAK_MB, 0 = off): each render keeps that many MB alive, the leaking
    renderer that CELERY_WORKER_MAX_MEMORY_PER_CHILD must recycle before it takes the host down."""
    megabytes = settings.LOGIFLOW_CHAOS_PDF_LEAK_MB
    if megabytes <= 0:
        return
    _leaked.append(b"\x01" * (megabytes << 20))  # written, so the pages are resident
    logger.warning("chaos: the PDF renderer leaked %d MB; process %d holds %d MB", megabytes, os.getpid(),
                   megabytes * len(_leaked))


def _when(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None
