"""The route page's map and the admin's width in a real (headless) Chromium: depot, stops and path drawn with tiles
blocked, no CSP violation, and pages that fit 1,280 px.

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.outbox.models import OutboxEvent
from tests.consumers.factories import dead_letter
from tests.routing.factories import calculated_route

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-browser.txt)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]
WIDTH = 1280
# Screenshots to look at after a run (BROWSER_SHOTS_DIR), else a temporary directory.
SHOTS = Path(os.environ.get("BROWSER_SHOTS_DIR") or tempfile.mkdtemp(prefix="logiflow-shots-"))


@contextmanager
def browse(base: str) -> Iterator[tuple[object, list[str]]]:
    """A logged-in superuser's page at 1,280 px with tile requests refused; yields (page, CSP errors).

    Make the test's rows first: Playwright's sync API runs an event loop, and Django refuses ORM calls beside one."""
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    session = client.cookies["sessionid"].value
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        context.route("https://tile.openstreetmap.org/**", lambda route: route.abort())
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        yield page, violations
        browser.close()


# Tables wider than the content column, or lists that scroll sideways; payloads and tracebacks may scroll.
OVERFLOWING = """() => {
  const right = document.querySelector("#content").getBoundingClientRect().right;
  const wide = [...document.querySelectorAll("#content table")]
    .filter(t => !t.closest("pre.payload") && t.getBoundingClientRect().right > right + 1);
  const scrolling = [...document.querySelectorAll("#content .results")].filter(r => r.scrollWidth > r.clientWidth + 1);
  return [...wide, ...scrolling].map(e => `${e.scrollWidth}>${e.clientWidth} ` + e.outerHTML.slice(0, 60));
}"""


def test_route_map_draws_depot_numbered_stops_and_path_without_tiles(live_server: object, tmp_path: Path) -> None:
    route = calculated_route()
    stops = route.stops.count()
    with browse(live_server.url) as (page, violations):  # type: ignore[attr-defined]
        page.goto(f"{live_server.url}/admin/routing/route/{route.pk}/change/")  # type: ignore[attr-defined]
        page.wait_for_selector("#route-map .leaflet-overlay-pane path")  # type: ignore[attr-defined]
        labels = page.locator(".route-map-stop").all_inner_texts()  # type: ignore[attr-defined]
        assert labels == [str(n) for n in range(1, stops + 1)]
        # The depot's circle and the path: vectors, drawn although every tile request failed.
        assert page.locator("#route-map .leaflet-overlay-pane path").count() == 2  # type: ignore[attr-defined]
        page.screenshot(path=str(SHOTS / "route.png"), full_page=True)  # type: ignore[attr-defined]
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # type: ignore[attr-defined]
        assert page.evaluate(OVERFLOWING) == []  # type: ignore[attr-defined]
    assert not violations, violations


def test_admin_pages_fit_1280_px_with_a_long_error(live_server: object) -> None:
    letter = dead_letter(1, scenario="", error=RuntimeError("customer has no billing account " * 40))
    calculated_route()
    event_id = OutboxEvent.objects.latest("id").pk
    with browse(live_server.url) as (page, violations):  # type: ignore[attr-defined]
        for url in ("/admin/consumers/deadletter/", f"/admin/consumers/deadletter/{letter.pk}/change/",
                    "/admin/outbox/outboxevent/", f"/admin/outbox/outboxevent/{event_id}/change/",
                    "/admin/routing/route/",
                    "/admin/routing/route/add/", "/admin/"):
            page.goto(live_server.url + url)  # type: ignore[attr-defined]
            page.screenshot(path=str(SHOTS / (url.strip("/").replace("/", "_") + ".png")), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, url  # type: ignore[attr-defined]
            assert page.evaluate(OVERFLOWING) == [], url  # type: ignore[attr-defined]
    assert not violations, violations
