"""A screenshot of each main page at 1,280 px, for people to look at after a run: the route list, a route's page and
its form, the invoice list and an invoice, the dead-letter ledger and a dead letter, the event-flow dashboard and
the event catalogue. Saved as `page-NN-<name>.png` in BROWSER_SHOTS_DIR (else the temporary directory the run's
summary names); each page answers 200, fits 1,280 px and reports no CSP violation.

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from apps.invoicing.models import Invoice
from tests.invoicing.factories import issued_invoice, three_stop_route, unbilled_route_dead_letter
from tests.routing.factories import calculated_route
from tests.support import browser
from tests.support.browser import WIDTH, assert_fits, browse, shoot

sync_api = browser.require_playwright()
pytestmark = browser.MARKS


def _png_width(path: Path) -> int:
    """The width in the PNG's header (IHDR, bytes 16-20)."""
    return int(struct.unpack(">I", path.read_bytes()[16:20])[0])


def test_each_main_page_is_saved_as_a_1280_px_screenshot(live_server: Any) -> None:
    route, letter = unbilled_route_dead_letter(customer_name="Ege Foods")
    calculated_route()
    invoice = issued_invoice(three_stop_route(route_id=route.pk + 100))
    Invoice.objects.filter(pk=invoice.pk).update(pdf=f"invoices/2026/{invoice.number}.pdf",
                                                 pdf_status=Invoice.PdfStatus.RENDERED)
    pages = [
        ("route-list", "/admin/routing/route/", "#result_list"),
        ("route", f"/admin/routing/route/{route.pk}/change/", "#route-map .leaflet-overlay-pane path"),
        ("route-form", "/admin/routing/route/add/", "#stops-group"),
        ("invoice-list", "/admin/invoicing/invoice/", "#result_list"),
        ("invoice", f"/admin/invoicing/invoice/{invoice.pk}/change/", "table.route-stops"),
        ("dead-letter-list", "/admin/consumers/deadletter/", "#result_list"),
        ("dead-letter", f"/admin/consumers/deadletter/{letter.pk}/change/", ".field-error_message"),
        ("dashboard", "/admin/common/heartbeat/flow/", ".flow-dashboard"),
    ]
    saved = []
    with browse(live_server.url) as (page, violations):
        for n, (name, url, drawn) in enumerate(pages, start=1):
            assert page.goto(live_server.url + url).status == 200, url
            page.wait_for_selector(drawn)
            assert_fits(page, url)
            saved.append(shoot(page, f"page-{n:02d}-{name}"))
        # The catalogue draws itself in a sandboxed frame: wait for its first message.
        assert page.goto(live_server.url + "/api/events/").status == 200
        sync_api.expect(page.locator("[id='message-RouteCalculated.v1']")).to_be_attached(timeout=30_000)
        saved.append(shoot(page, f"page-{len(pages) + 1:02d}-event-catalogue"))
    assert [_png_width(path) for path in saved] == [WIDTH] * (len(pages) + 1)
    assert not violations, violations
