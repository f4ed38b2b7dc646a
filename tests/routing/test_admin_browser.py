"""The route page's map, the add form's stop reordering and the admin's width in a real (headless) Chromium: depot,
stops and path drawn with tiles blocked, stops moved by drag or arrow keys, no CSP violation, pages that fit 1,280 px.

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from apps.outbox.models import OutboxEvent
from apps.routing import services
from apps.routing.models import Customer, Route, Truck
from tests.consumers.factories import dead_letter
from tests.routing.factories import CustomerFactory, TruckFactory, calculated_route
from tests.support.browser import (
    MARKS,
    OVERFLOWING,
    SHOTS,
    WIDTH,
    assert_fits,
    browse,
    require_playwright,
    shoot,
    text_lines,
)

require_playwright()
pytestmark = MARKS


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


# --- reordering the stops of the route add form (stop_order.js) ---------------------------------------------

STOPS = [("Ankara", "39.9334", "32.8597"), ("Bursa", "40.1885", "29.0610"), ("Izmit", "40.7654", "29.9408")]


@pytest.fixture
def received_stops(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The stop names `route_calculate` is given, in order, per call (the admin calls it through the module)."""
    calls: list[list[str]] = []
    real = services.route_calculate

    def spy(**kwargs: Any) -> Any:
        calls.append([stop.name for stop in kwargs["stops"]])
        return real(**kwargs)

    monkeypatch.setattr(services, "route_calculate", spy)
    return calls


def _fill_route_form(page: Any, truck: Truck, customer: Customer) -> None:
    page.select_option("#id_truck", str(truck.pk))
    page.select_option("#id_customer", str(customer.pk))
    for i, (name, lat, lon) in enumerate(STOPS):
        page.fill(f"#id_stops-{i}-name", name)
        page.fill(f"#id_stops-{i}-lat", lat)
        page.fill(f"#id_stops-{i}-lon", lon)


ROW_ORDER = """() => [...document.querySelectorAll("#stops-group tbody tr.form-row")].map(row =>
  [row.querySelector(".field-name input").value, row.querySelector(".field-ORDER input").value])"""


def test_dragging_the_third_stop_to_the_top_submits_it_first(
    live_server: Any, dispatcher: Any, received_stops: list[list[str]]
) -> None:
    truck, customer = TruckFactory(), CustomerFactory()
    with browse(live_server.url, dispatcher) as (page, violations):
        page.goto(f"{live_server.url}/admin/routing/route/add/")
        _fill_route_form(page, truck, customer)
        rows = page.locator("#stops-group tbody tr.form-row")
        rows.nth(2).scroll_into_view_if_needed()
        handle = rows.nth(2).locator(".stop-handle").bounding_box()
        top = rows.nth(0).bounding_box()
        page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
        page.mouse.down()
        page.mouse.move(top["x"] + 20, top["y"] + 3, steps=12)
        page.mouse.up()
        assert page.evaluate(ROW_ORDER)[:4] == [["Izmit", "1"], ["Ankara", "2"], ["Bursa", "3"], ["", ""]]
        page.screenshot(path=str(SHOTS / "route_add_dragged.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
        assert page.evaluate(OVERFLOWING) == []
        page.click("input[name=_save]")
        page.wait_for_url("**/admin/routing/route/*/change/")
    assert received_stops == [["Izmit", "Ankara", "Bursa"]]
    route = Route.objects.get()
    assert route.truck == truck and route.stop_order == "as_given", "the form keeps the dispatcher's order by default"
    assert [stop.name for stop in route.stops.order_by("sequence")] == ["Izmit", "Ankara", "Bursa"]
    assert not violations, violations


def test_arrow_keys_on_a_stop_handle_move_the_row_and_typed_numbers_still_count(
    live_server: Any, dispatcher: Any, received_stops: list[list[str]]
) -> None:
    truck, customer = TruckFactory(), CustomerFactory()
    with browse(live_server.url, dispatcher) as (page, violations):
        page.goto(f"{live_server.url}/admin/routing/route/add/")
        _fill_route_form(page, truck, customer)
        page.locator("#stops-group tbody tr.form-row").nth(0).locator(".stop-handle").focus()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")  # the focus stays on the moved row's handle
        assert page.evaluate(ROW_ORDER)[:3] == [["Bursa", "1"], ["Izmit", "2"], ["Ankara", "3"]]
        page.fill("#id_stops-0-ORDER", "0")  # then Ankara typed back to the front: the numbers are what counts
        page.click("input[name=_save]")
        page.wait_for_url("**/admin/routing/route/*/change/")
    assert received_stops == [["Ankara", "Bursa", "Izmit"]] and Route.objects.count() == 1
    assert not violations, violations


def test_add_a_stop_adds_rows_up_to_the_most_a_route_may_have(
    live_server: Any, dispatcher: Any, received_stops: list[list[str]], settings: Any
) -> None:
    settings.ROUTING_MAX_STOPS = 7
    truck, customer = TruckFactory(), CustomerFactory()
    with browse(live_server.url, dispatcher) as (page, violations):
        page.goto(f"{live_server.url}/admin/routing/route/add/")
        _fill_route_form(page, truck, customer)
        rows = page.locator("#stops-group tbody tr.form-row")
        assert rows.count() == 5
        page.click("button.stop-add")
        page.click("button.stop-add")
        assert rows.count() == 7 and page.locator("button.stop-add").is_disabled()
        page.fill("#id_stops-6-name", "Sakarya")
        page.fill("#id_stops-6-lat", "40.7569")
        page.fill("#id_stops-6-lon", "30.3783")
        page.click("input[name=_save]")
        page.wait_for_url("**/admin/routing/route/*/change/")
    assert received_stops == [["Ankara", "Bursa", "Izmit", "Sakarya"]]
    assert not violations, violations


# --- widths: the route list at 1,280 px, the route page on a phone ----------------------------------------


def test_the_route_list_at_1280_px_keeps_plates_on_one_line_and_times_on_two_at_most(live_server: Any) -> None:
    for n in range(3):
        calculated_route(customer=CustomerFactory(name=f"Anadolu Textiles and Garments Wholesale {n}"),
                         truck=TruckFactory(plate=f"34 ABC {n}12"))
    with browse(live_server.url) as (page, violations):
        page.goto(f"{live_server.url}/admin/routing/route/")
        shoot(page, "route_list")
        plates = text_lines(page, "#result_list td.field-truck")
        times = text_lines(page, "#result_list td.field-departs, #result_list td.field-arrives")
        assert len(plates) == 3 and len(times) == 6
        assert [cell for cell in plates if cell[1] != 1] == [], "a plate wraps"
        # A time is its date, then its time and zone: two lines at most, each whole.
        assert [cell for cell in times if cell[1] > 2] == [], "a time wraps over three lines or more"
        assert_fits(page, "route list")
    assert not violations, violations


PHONE = {"width": 390, "height": 844}
# Each table of the route page: whether it lies inside the screen, or else whether the box it scrolls in does.
TABLE_BOXES = """width => [...document.querySelectorAll("#content table")].map(table => {
  let box = table.parentElement;
  while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
  const inside = el => el.getBoundingClientRect().left >= -1 && el.getBoundingClientRect().right <= width + 1;
  return [table.querySelector("th, td").innerText.trim(), inside(table) || (box !== null && inside(box))];
})"""


def test_the_route_page_on_a_390_px_phone_scrolls_its_tables_in_their_own_boxes(live_server: Any) -> None:
    route = calculated_route()
    with browse(live_server.url) as (page, violations):
        page.set_viewport_size(PHONE)
        page.goto(f"{live_server.url}/admin/routing/route/{route.pk}/change/")
        page.wait_for_selector("#route-map .leaflet-overlay-pane path")
        shoot(page, "route-390px")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
        content = page.locator("#content-main").bounding_box()
        assert content["width"] >= 0.85 * PHONE["width"], "the page's column is squeezed"
        boxes = page.evaluate(TABLE_BOXES, PHONE["width"])
        assert len(boxes) >= 3 and all(inside for _, inside in boxes), boxes
        # Readable: a cell's text keeps whole words (an event type or a time is not broken letter by letter).
        cells = text_lines(page, "#content .inline-group td, #content .field-events td")
        assert [cell for cell in cells if cell[1] > 2] == [], "cells broken over three lines or more"
    assert not violations, violations


def test_a_browser_in_tokyo_sees_the_route_in_tokyo_time_from_its_second_page_on(
    live_server: Any, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    route = calculated_route(departs_at=datetime(2026, 12, 24, 5, 45, tzinfo=UTC))
    with browse(live_server.url) as (page, violations):
        page.context.new_cdp_session(page).send("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
        page.goto(f"{live_server.url}/admin/")
        assert page.locator(".reader-zone").text_content() == "Times: Europe/Berlin", "the site's, until it knows"
        page.goto(f"{live_server.url}/admin/routing/route/{route.pk}/change/")
        assert page.locator(".reader-zone").text_content() == "Times: Asia/Tokyo"
        assert page.locator(".field-departs_at .readonly").inner_text() == "2026-12-24 14:45 JST"
    assert not violations, violations
