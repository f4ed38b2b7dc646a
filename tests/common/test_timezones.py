"""Times in the reader's own time zone: the zone their browser reports (a cookie), else the site's; always named.
The API and the invoice PDF keep the site's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.common.timezones import COOKIE
from apps.contracts import RouteCalculated
from apps.invoicing.pdf import invoice_html
from apps.outbox.models import OutboxEvent
from tests.invoicing.factories import issued_invoice
from tests.routing.factories import calculated_route

pytestmark = pytest.mark.django_db
DEPARTS = datetime(2026, 12, 24, 5, 45, tzinfo=UTC)


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def _route_page(client: Client) -> str:
    route = calculated_route(departs_at=DEPARTS)
    return client.get(f"/admin/routing/route/{route.pk}/change/").content.decode()


def test_a_page_shows_times_in_the_readers_zone_when_the_browser_named_one(root: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    root.cookies[COOKIE] = "Asia/Tokyo"
    page = _route_page(root)
    assert "2026-12-24 14:45 JST" in page, "the departure in Tokyo time, named"
    assert "Times: Asia/Tokyo" in page, "the page says whose zone it shows"


@pytest.mark.parametrize("cookie", ["", "Mars/Olympus_Mons", "../../etc/passwd", "Europe/" + "x" * 80])
def test_without_a_zone_the_browser_named_pages_show_the_sites(root: Client, settings: Any, cookie: str) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    root.cookies[COOKIE] = cookie
    page = _route_page(root)
    assert "2026-12-24 06:45 CET" in page and "Times: Europe/Berlin" in page


def test_the_api_keeps_the_sites_zone_whatever_the_cookie(root: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    root.cookies[COOKIE] = "Asia/Tokyo"
    route = calculated_route(departs_at=DEPARTS)
    body = root.get(f"/api/v1/routes/{route.pk}/").json()
    assert body["departs_at"] == "2026-12-24T06:45:00+01:00"


def test_the_invoice_pages_route_summary_shows_times_like_the_rest_of_the_page(root: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    invoice = _invoice_departing(DEPARTS)
    page = root.get(f"/admin/invoicing/invoice/{invoice.pk}/change/").content.decode()
    assert "<td>2026-12-24 06:45 CET</td>" in page, "the departure formatted in the site's zone, named"
    assert "2026-12-24T05:45:00Z" not in page and "T05:45" not in page, "no raw ISO time"


def test_the_pdf_shows_the_sites_zone_named_whoever_has_it_rendered(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    invoice = _invoice_departing(DEPARTS)
    with timezone.override("Asia/Tokyo"):  # a reader's zone must not leak into the document
        html = invoice_html(invoice)
    assert "at 2026-12-24 06:45 CET" in html
    assert "UTC" not in html and "JST" not in html


def _invoice_departing(departs_at: datetime) -> Any:
    calculated_route(departs_at=departs_at)
    row = OutboxEvent.objects.get(event_type=RouteCalculated.ce_type())
    return issued_invoice(RouteCalculated.model_validate_json(row.payload))
