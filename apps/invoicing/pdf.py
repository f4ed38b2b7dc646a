"""The invoice PDF: a Django template rendered to HTML, then to PDF by WeasyPrint.

Kept apart from the services so the benchmark can time the bare HTML → PDF step against the whole task.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.dateparse import parse_datetime
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from apps.invoicing.models import Invoice, InvoiceLine

TEMPLATE = "invoicing/invoice.html"
# The only files a render may read: fonts, logos or stylesheets shipped with the invoice template.
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


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


def invoice_context(invoice: Invoice) -> dict[str, Any]:
    lines = list(invoice.lines.all())
    summary = invoice.route_summary
    return {
        "issuer": settings.INVOICING_ISSUER,
        "invoice": invoice,
        "net_lines": [line for line in lines if line.kind != InvoiceLine.Kind.VAT],
        "vat_lines": [line for line in lines if line.kind == InvoiceLine.Kind.VAT],
        "route": {
            **summary,
            "eta": _when(summary.get("eta")),
            "calculated_at": _when(summary.get("calculated_at")),
            "stops": [{**stop, "eta": _when(stop["eta"])} for stop in summary.get("stops", [])],
        },
    }


def invoice_html(invoice: Invoice) -> str:
    return render_to_string(TEMPLATE, invoice_context(invoice))


def html_to_pdf(html: str) -> bytes:
    return HTML(string=html, base_url=ASSETS_DIR.as_uri() + "/", url_fetcher=BundledAssetsOnly()).write_pdf()


def render_invoice_pdf(invoice: Invoice) -> bytes:
    return html_to_pdf(invoice_html(invoice))


def _when(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None
