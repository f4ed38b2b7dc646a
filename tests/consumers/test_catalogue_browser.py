"""The event catalogue page in a real (headless) Chromium: the vendored AsyncAPI renderer draws the document from
this server alone (every other address refused), under the page's CSP, with no console error; a dead letter's link
to its event version lands on that message. Screenshot `event_catalogue.png` in BROWSER_SHOTS_DIR (else a temporary
directory, named in the run's summary).

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

from typing import Any

from apps.contracts import InvoiceGenerated
from tests.consumers.factories import dead_letter_of_type
from tests.support import browser
from tests.support.browser import browse, shoot

sync_api = browser.require_playwright()
pytestmark = browser.MARKS


def test_a_dead_letters_link_opens_the_catalogue_rendered_offline_at_its_message(live_server: Any) -> None:
    letter = dead_letter_of_type(InvoiceGenerated.ce_type(), group="routing")
    with browse(live_server.url) as (page, violations):
        errors: list[str] = []
        elsewhere: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))

        def same_origin_only(route: Any) -> None:
            if route.request.url.startswith(live_server.url):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.context.route("**/*", same_origin_only)
        page.goto(f"{live_server.url}/admin/consumers/deadletter/{letter.pk}/change/")
        page.click("text=InvoiceGenerated.v1 in the event catalogue")
        page.wait_for_url("**/api/events/#message-InvoiceGenerated.v1")
        message = page.locator("[id='message-InvoiceGenerated.v1']")
        sync_api.expect(message).to_be_visible(timeout=30_000)
        for name in ("RouteCalculated.v1", "CustomerUpserted.v1"):
            sync_api.expect(page.locator(f"[id='message-{name}']")).to_be_attached()
        sync_api.expect(message).to_contain_text("Read by")
        sync_api.expect(message).to_contain_text("apps.routing.handlers.mark_route_invoiced")
        sync_api.expect(page.locator("#operations")).to_contain_text("invoicing.reads.routing.events")
        # The link to one message scrolled it into view once the renderer had drawn it.
        sync_api.expect(message).to_be_in_viewport()
        # The sandbox: the page has an opaque origin, so what runs there cannot reach the session or the site.
        assert page.evaluate("window.origin") == "null"
        shoot(page, "event_catalogue")
    assert not elsewhere, elsewhere
    assert not violations, violations
    assert not errors, errors
