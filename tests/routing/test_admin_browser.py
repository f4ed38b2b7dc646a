"""The route page's map and the admin's width in a real (headless) Chromium: depot, stops and path drawn with tiles
blocked, no CSP violation, and pages that fit 1,280 px.

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

from django.contrib.auth.models import User

from apps.outbox.models import OutboxEvent
from tests.consumers.factories import dead_letter
from tests.routing.factories import calculated_route
from tests.support import browser
from tests.support.browser import assert_fits, browse, session_cookie, shoot

sync_api = browser.require_playwright()
pytestmark = browser.MARKS


def _superuser() -> str:
    return session_cookie(User.objects.create_superuser("root", password="pw"))


def test_route_map_draws_depot_numbered_stops_and_path_without_tiles(live_server: object) -> None:
    route = calculated_route()
    stops = route.stops.count()
    with browse(live_server.url, _superuser()) as (page, violations):  # type: ignore[attr-defined]
        page.goto(f"{live_server.url}/admin/routing/route/{route.pk}/change/")  # type: ignore[attr-defined]
        page.wait_for_selector("#route-map .leaflet-overlay-pane path")
        labels = page.locator(".route-map-stop").all_inner_texts()
        assert labels == [str(n) for n in range(1, stops + 1)]
        # The depot's circle and the path: vectors, drawn although every tile request failed.
        assert page.locator("#route-map .leaflet-overlay-pane path").count() == 2
        shoot(page, "route")
        assert_fits(page)
    assert not violations, violations


def test_admin_pages_fit_1280_px_with_a_long_error(live_server: object) -> None:
    letter = dead_letter(1, scenario="", error=RuntimeError("customer has no billing account " * 40))
    calculated_route()
    event_id = OutboxEvent.objects.latest("id").pk
    with browse(live_server.url, _superuser()) as (page, violations):  # type: ignore[attr-defined]
        for url in ("/admin/consumers/deadletter/", f"/admin/consumers/deadletter/{letter.pk}/change/",
                    "/admin/outbox/outboxevent/", f"/admin/outbox/outboxevent/{event_id}/change/",
                    "/admin/routing/route/",
                    "/admin/routing/route/add/", "/admin/"):
            page.goto(live_server.url + url)  # type: ignore[attr-defined]
            shoot(page, url.strip("/").replace("/", "_"))
            assert_fits(page, url)
    assert not violations, violations
