"""The dispatchers' admin: the dispatcher role, the recalculate action, a route's outbox events on its page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client
from django.utils import timezone

from apps import outbox
from apps.consumers.models import DeadLetter
from apps.contracts import RouteCalculated
from apps.outbox.models import OutboxEvent
from apps.routing.admin import local_time
from apps.routing.models import Route, Truck
from tests.factories import invoice_generated, route_calculated
from tests.routing.conftest import DISPATCHER_PERMISSIONS
from apps.routing.services import StopInput
from tests.routing.factories import CustomerFactory, DepotFactory, TruckFactory, calculated_route, slow_truck_down

CHANGELIST = "/admin/routing/route/"


@pytest.fixture
def dispatcher_browser(dispatcher: User) -> Client:
    client = Client()
    client.force_login(dispatcher)
    return client


@pytest.mark.django_db
def test_migration_gives_dispatchers_exactly_routing_and_read_only_outbox() -> None:
    group = Group.objects.get(name="dispatcher")
    granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert granted == set(DISPATCHER_PERMISSIONS)
    assert {name.split(".")[0] for name in granted} == {"routing", "outbox"}
    assert [name for name in granted if name.startswith("outbox.")] == ["outbox.view_outboxevent"]
    assert not any(name.split(".")[1].startswith("delete_") for name in granted)


@pytest.mark.django_db
def test_recalculate_action_recalculates_the_selected_routes_and_reports_how_many(dispatcher_browser: Client) -> None:
    first, second, untouched = calculated_route(), calculated_route(), calculated_route()
    slow_truck_down(first), slow_truck_down(second)
    response = dispatcher_browser.post(
        CHANGELIST, {"action": "recalculate_routes", "_selected_action": [first.pk, second.pk]}
    )
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Recalculated 2 route(s); each published a new RouteCalculated."
    ]
    calculations = dict(Route.objects.values_list("pk", "calculation"))
    assert calculations == {first.pk: 2, second.pk: 2, untouched.pk: 1}
    assert OutboxEvent.objects.filter(event_type=RouteCalculated.ce_type()).count() == 5


@pytest.mark.django_db
def test_recalculate_action_reports_routes_it_refused_and_still_does_the_others(dispatcher_browser: Client) -> None:
    done, cancelled = calculated_route(), calculated_route()
    slow_truck_down(done)
    Route.objects.filter(pk=cancelled.pk).update(status=Route.Status.CANCELLED)
    response = dispatcher_browser.post(
        CHANGELIST, {"action": "recalculate_routes", "_selected_action": [done.pk, cancelled.pk]}
    )
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages[0].startswith("Recalculated 1 route(s)")
    assert f"route {cancelled.pk}: a cancelled route cannot be recalculated" in messages[1]
    assert Route.objects.get(pk=done.pk).calculation == 2


@pytest.mark.django_db
def test_lifecycle_actions_report_how_many_changed_and_which_were_refused(dispatcher_browser: Client) -> None:
    fresh, other, finished = calculated_route(), calculated_route(), calculated_route()
    Route.objects.filter(pk=finished.pk).update(status=Route.Status.COMPLETED)
    selected = [fresh.pk, other.pk, finished.pk]

    def run(action: str) -> list[str]:
        # Following the redirect shows (and so consumes) the messages, so each run sees only its own.
        response = dispatcher_browser.post(CHANGELIST, {"action": action, "_selected_action": selected}, follow=True)
        assert response.redirect_chain == [(CHANGELIST, 302)]
        return [str(m) for m in response.context["messages"]]

    assert run("dispatch_routes") == [
        "Dispatched 2 route(s).", f"Not dispatched: route {finished.pk}: a completed route cannot be dispatched",
    ]
    Route.objects.filter(pk=other.pk).update(status=Route.Status.CALCULATED)
    assert run("complete_routes") == [
        "Completed 1 route(s).",
        f"Not completed: route {other.pk}: a calculated route cannot be completed; "
        f"route {finished.pk}: a completed route cannot be completed",
    ]
    assert run("cancel_routes") == [
        "Cancelled 1 route(s).",
        f"Not cancelled: route {fresh.pk}: a completed route cannot be cancelled; "
        f"route {finished.pk}: a completed route cannot be cancelled",
    ]
    statuses = dict(Route.objects.values_list("pk", "status"))
    assert statuses == {fresh.pk: "completed", other.pk: "cancelled", finished.pk: "completed"}
    assert Route.objects.get(pk=other.pk).cancel_reason == "cancelled in the admin by dispatcher"
    assert OutboxEvent.objects.count() == 3, "lifecycle actions publish nothing"


@pytest.mark.django_db
def test_route_page_is_read_only_and_lists_its_outbox_events_with_state(dispatcher_browser: Client) -> None:
    route = calculated_route(departs_at=datetime(2026, 11, 26, 6, tzinfo=UTC))
    OutboxEvent.objects.update(state=OutboxEvent.State.PUBLISHED)
    with transaction.atomic():
        # Another route of the same truck, and invoicing's event for this route.
        outbox.publish(route_calculated(route_id=route.pk + 100, truck_id=route.truck_id))
        outbox.publish(invoice_generated(route_id=route.pk, number="LF-2026-000042"))
    page = dispatcher_browser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()
    assert RouteCalculated.ce_type() in page and "published" in page
    assert "logiflow.invoicing.InvoiceGenerated.v1" in page and "pending" in page
    assert page.count("<tr><td>") == 2  # the other route's event is not shown
    assert 'name="_save"' not in page  # routes change only by recalculation
    for stop in route.stops.all():
        assert stop.name in page


@pytest.mark.django_db
def test_route_search_finds_by_plate_customer_and_route_id(dispatcher_browser: Client) -> None:
    # Names without digits, so searching a route id cannot also match a plate or a name.
    route = calculated_route(truck=TruckFactory(plate="IST-ALPHA"), customer=CustomerFactory(name="Ege Foods"))
    other = calculated_route(truck=TruckFactory(plate="ANK-BETA"), customer=CustomerFactory(name="Marmara Steel"))
    for term in (route.truck.plate, route.customer.name, str(route.pk)):
        listed = dispatcher_browser.get(CHANGELIST, {"q": term}).context["cl"].result_list
        assert list(listed) == [route], term
    assert other not in dispatcher_browser.get(CHANGELIST, {"status__exact": "cancelled"}).context["cl"].result_list


@pytest.mark.django_db
def test_truck_added_in_admin_is_validated_and_saved_through_the_service(dispatcher_browser: Client) -> None:
    depot = DepotFactory()
    form = {"plate": "06 LF 100", "depot": depot.pk, "capacity_kg": 9000, "average_speed_kmh": 65, "active": "on"}
    response = dispatcher_browser.post("/admin/routing/truck/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    truck = Truck.objects.get(plate="06 LF 100")
    changed = dispatcher_browser.post(f"/admin/routing/truck/{truck.pk}/change/", {**form, "active": ""})
    assert changed.status_code == 302
    truck.refresh_from_db()
    assert truck.active is False


@pytest.mark.django_db
def test_finance_user_cannot_open_routing_admin(finance_user: User) -> None:
    client = Client()
    client.force_login(finance_user)
    assert client.get(CHANGELIST).status_code == 403


# --- planning a route in the admin (issue 11) ---------------------------------------------------------------

ADD = f"{CHANGELIST}add/"


def plan_form(truck: Truck, customer: object, stops: list[tuple[str, str, str, str]], **extra: str) -> dict[str, str]:
    """The add form's POST: the route fields and one formset row per (order, name, lat, lon)."""
    data = {
        "truck": str(truck.pk), "customer": str(customer.pk),  # type: ignore[attr-defined]
        "departs_at_0": "2026-11-30", "departs_at_1": "06:00:00",
        "stops-TOTAL_FORMS": "8", "stops-INITIAL_FORMS": "0", "stops-MIN_NUM_FORMS": "0", "stops-MAX_NUM_FORMS": "50",
        "stop_order": "as_given", **extra,
    }
    for i, (order, name, lat, lon) in enumerate(stops):
        data.update({f"stops-{i}-ORDER": order, f"stops-{i}-name": name, f"stops-{i}-lat": lat, f"stops-{i}-lon": lon})
    return data


@pytest.mark.django_db
def test_dispatcher_opens_the_route_add_form(dispatcher_browser: Client) -> None:
    page = dispatcher_browser.get(ADD)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="truck"' in html and 'name="stops-0-name"' in html and 'name="stops-0-ORDER"' in html
    assert "<script>" not in html, "no inline script under the CSP"
    assert '<script src="/static/routing/stop_order.js" defer>' in html, "rows reorderable by drag and arrow keys"


@pytest.mark.django_db
def test_route_planned_on_the_add_form_goes_through_route_calculate_and_shows_the_plan(
    dispatcher_browser: Client,
) -> None:
    truck, customer = TruckFactory(), CustomerFactory()
    stops = [("2", "Ankara", "39.9334", "32.8597"), ("1", "Izmit", "40.7654", "29.9408"),
             ("", "Bursa", "40.1885", "29.0610")]
    response = dispatcher_browser.post(ADD, plan_form(truck, customer, stops))
    assert response.status_code == 302, response.content.decode()[:3000]
    route = Route.objects.get()
    assert response["Location"] == f"{CHANGELIST}{route.pk}/change/"
    assert route.status == Route.Status.CALCULATED and route.calculation == 1
    assert route.departs_at == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert OutboxEvent.objects.filter(event_type=RouteCalculated.ce_type()).count() == 1
    page = dispatcher_browser.get(response["Location"]).content.decode()
    assert f"{route.distance_km}" in page
    planned = list(route.stops.order_by("sequence"))
    assert {stop.name for stop in planned} == {"Ankara", "Izmit", "Bursa"}
    for stop in planned:
        assert f"{stop.leg_distance_km}" in page
    positions = [page.index(f"<p>{stop.name}</p>") for stop in planned]
    assert positions == sorted(positions), "stops shown in the planned visiting order"
    assert 'name="_save"' not in page


@pytest.mark.django_db
def test_the_service_refusal_shows_on_the_field_it_names_and_writes_nothing(dispatcher_browser: Client) -> None:
    parked = TruckFactory(active=False)
    response = dispatcher_browser.post(ADD, plan_form(parked, CustomerFactory(), [("", "Ankara", "39.9", "32.8")]))
    assert response.status_code == 200
    assert response.context["form"].errors["truck"] == [f"truck {parked.plate} is inactive"]
    no_stops = dispatcher_browser.post(ADD, plan_form(TruckFactory(), CustomerFactory(), []))
    assert any("a route needs between 1 and" in error for error in no_stops.context["stop_errors"])
    assert "a route needs between 1 and" in no_stops.content.decode()
    assert not Route.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_invalid_stop_rows_show_their_errors_on_the_form(dispatcher_browser: Client) -> None:
    response = dispatcher_browser.post(ADD, plan_form(TruckFactory(), CustomerFactory(), [("", "Nowhere", "95", "")]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Ensure this value is less than or equal to 90" in html and "This field is required" in html
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_finance_cannot_open_the_route_add_form(finance_user: User) -> None:
    client = Client()
    client.force_login(finance_user)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {}).status_code == 403


# --- a route whose invoicing failed (issue 11) --------------------------------------------------------------


def invoicing_dead_letter(route: Route, **fields: object) -> DeadLetter:
    """What invoicing's consumer leaves in the ledger when it cannot apply the route's RouteCalculated."""
    event = OutboxEvent.objects.filter(event_type=RouteCalculated.ce_type()).latest("id")
    now = timezone.now()
    return DeadLetter.objects.create(**{
        "group": "invoicing", "topic": event.topic, "partition": 0, "offset": route.pk, "key": b"1", "value": b"{}",
        "event_id": event.event_id, "event_type": event.event_type, "reason": DeadLetter.Reason.NON_RETRYABLE,
        "error_message": "customer has no billing account", "fingerprint": "f" * 16,
        "first_failed_at": now, "last_failed_at": now, **fields,
    })


@pytest.mark.django_db
def test_route_page_warns_of_failed_invoicing_and_links_the_dead_letter_for_who_may_view_it(
    dispatcher_browser: Client,
) -> None:
    route = calculated_route()
    letter = invoicing_dead_letter(route)
    other = calculated_route()
    link = f'href="/admin/consumers/deadletter/{letter.pk}/change/"'
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", password="pw"))
    page = superuser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()
    assert "Invoicing of this route failed" in page and link in page and "customer has no billing account" in page
    dispatcher_page = dispatcher_browser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()
    assert "Invoicing of this route failed" in dispatcher_page and link not in dispatcher_page
    assert "Invoicing of this route failed" not in superuser.get(f"{CHANGELIST}{other.pk}/change/").content.decode()
    DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.REPLAYED)
    assert "Invoicing of this route failed" not in superuser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()


@pytest.mark.django_db
def test_route_page_says_invoicing_is_awaited_since_the_route_was_calculated(dispatcher_browser: Client) -> None:
    route = calculated_route()
    written = OutboxEvent.objects.get(event_type=RouteCalculated.ce_type()).created_at
    page = dispatcher_browser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()
    assert f"Waiting for invoicing since {local_time(written)}" in page
    Route.objects.filter(pk=route.pk).update(invoice_number="LF-2026-000001", invoiced_at=timezone.now())
    assert "Waiting for invoicing" not in dispatcher_browser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()


@pytest.mark.django_db
def test_route_page_says_which_dead_letter_of_which_route_holds_its_invoicing_back() -> None:
    blocking = calculated_route()
    head = invoicing_dead_letter(blocking, value=OutboxEvent.objects.latest("id").payload.encode())
    held = calculated_route(truck=blocking.truck)
    invoicing_dead_letter(held, reason=DeadLetter.Reason.PARKED, blocked_by=head, offset=10_000,
                          error_message=f"parked behind dead letter {head.pk}")
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", password="pw"))
    page = superuser.get(f"{CHANGELIST}{held.pk}/change/").content.decode()
    assert "Invoicing of this route waits: held behind" in page
    assert f'/admin/consumers/deadletter/{head.pk}/change/">dead letter #{head.pk} of route {blocking.pk}</a>' in page
    assert "Invoicing of this route failed" not in page
    failed = superuser.get(f"{CHANGELIST}{blocking.pk}/change/").content.decode()
    assert "Invoicing of this route failed because customer has no billing account" in failed


# --- the route's map (issue 11) ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_route_page_carries_its_map_data_in_a_json_block_and_loads_only_scripts_from_this_server(
    dispatcher_browser: Client,
) -> None:
    import json
    import re

    route = calculated_route(stops=[StopInput(name="</script><b>Ankara</b>", lat=39.9334, lon=32.8597),
                                    StopInput(name="Izmit", lat=40.7654, lon=29.9408)])
    response = dispatcher_browser.get(f"{CHANGELIST}{route.pk}/change/")
    html = response.content.decode()
    assert 'id="route-map"' in html
    block = re.search(r'<script id="route-map-data" type="application/json">(.*?)</script>', html, re.S)
    assert block, "the data travels in a JSON data block"
    data = json.loads(block.group(1))
    assert data["depot"] == {"name": route.depot.name, "lat": route.depot.lat, "lon": route.depot.lon}
    planned = route.stops.order_by("sequence").values_list("name", flat=True)
    assert [stop["name"] for stop in data["stops"]] == list(planned)
    assert "</script><b>" not in html, "a stop name cannot break out of the block"
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs in scripts), scripts
    assert "/static/routing/vendor/leaflet/leaflet.js" in html and "/static/routing/route_map.js" in html
    assert "https://tile.openstreetmap.org" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_route_page_offers_the_fix_its_dead_letter_names() -> None:
    route = calculated_route()
    invoicing_dead_letter(route, fix_label="Add billing account for Elbe Kaffee AG",
                          fix_url="/admin/invoicing/billingaccount/add/?customer=2")
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", password="pw"))

    page = superuser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()

    assert '<a href="/admin/invoicing/billingaccount/add/?customer=2">Add billing account for Elbe Kaffee AG</a>' in page


@pytest.mark.django_db
def test_the_add_form_keeps_the_dispatchers_order_when_asked_to(dispatcher_browser: Client) -> None:
    truck, customer = TruckFactory(), CustomerFactory()
    stops = [("1", "Ankara", "39.9334", "32.8597"), ("2", "Izmit", "40.7654", "29.9408"),
             ("3", "Bursa", "40.1885", "29.0610")]  # not the shortest tour from Istanbul
    response = dispatcher_browser.post(ADD, plan_form(truck, customer, stops, stop_order="as_given"))
    assert response.status_code == 302, response.content.decode()[:3000]
    route = Route.objects.get()
    assert route.stop_order == "as_given"
    assert [stop.name for stop in route.stops.order_by("sequence")] == ["Ankara", "Izmit", "Bursa"]


@pytest.mark.django_db
def test_an_optimised_route_shows_the_dispatchers_order_beside_it_with_the_distance_saved(
    dispatcher_browser: Client,
) -> None:
    stops = [("1", "Ankara", "39.9334", "32.8597"), ("2", "Izmit", "40.7654", "29.9408"),
             ("3", "Bursa", "40.1885", "29.0610")]
    response = dispatcher_browser.post(ADD, plan_form(TruckFactory(), CustomerFactory(), stops, stop_order="optimised"))
    assert response.status_code == 302, response.content.decode()[:3000]
    route = Route.objects.get()
    assert [stop.name for stop in route.stops.order_by("sequence")] != ["Ankara", "Izmit", "Bursa"]
    assert [stop.given_position for stop in route.stops.order_by("given_position")] == [1, 2, 3]
    page = dispatcher_browser.get(response["Location"]).content.decode()
    assert '<table class="stop-orders">' in page
    assert "Your order" in page and "Optimised order" in page
    assert "saves " in page and " km" in page


@pytest.mark.django_db
def test_the_add_form_offers_both_stop_orders_and_defaults_to_the_dispatchers(dispatcher_browser: Client) -> None:
    form = dispatcher_browser.get(ADD).context["form"]
    assert form.fields["stop_order"].initial == "as_given"
    assert {value for value, _ in form.fields["stop_order"].choices} == {"as_given", "optimised"}


@pytest.mark.django_db
def test_truck_and_route_labels_carry_their_units_and_no_help_text_names_a_setting(dispatcher_browser: Client) -> None:
    truck_form = dispatcher_browser.get(f"/admin/routing/truck/{TruckFactory().pk}/change/").content.decode()
    assert "Capacity (kg)" in truck_form and "Average speed (km/h)" in truck_form
    assert "ROUTING_" not in truck_form
    route = calculated_route()
    assert "<label>ETA:</label>" in dispatcher_browser.get(f"{CHANGELIST}{route.pk}/change/").content.decode()
    assert ">ETA<" in dispatcher_browser.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_a_stop_rows_errors_name_the_field_they_are_about(dispatcher_browser: Client) -> None:
    response = dispatcher_browser.post(ADD, plan_form(TruckFactory(), CustomerFactory(), [("", "Nowhere", "95", "")]))
    html = response.content.decode()
    assert "latitude: Ensure this value is less than or equal to 90" in html
    assert "longitude: This field is required" in html


@pytest.mark.django_db
def test_the_add_form_takes_as_many_stop_rows_as_a_route_may_have(dispatcher_browser: Client, settings: Any) -> None:
    settings.ROUTING_MAX_STOPS = 12
    stops = [(str(n), f"Stop {n}", str(40 + n / 100), "30.0") for n in range(1, 13)]
    data = plan_form(TruckFactory(), CustomerFactory(), stops, stop_order="as_given")
    data["stops-TOTAL_FORMS"] = "12"
    response = dispatcher_browser.post(ADD, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Route.objects.get().stops.count() == 12
    page = dispatcher_browser.get(ADD).content.decode()
    assert 'id="stops-empty"' in page and 'data-max="12"' in page, "a template row and the limit for 'Add a stop'"


@pytest.mark.django_db
def test_route_times_are_shown_in_the_sites_time_zone_and_name_it(dispatcher_browser: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    form = plan_form(TruckFactory(), CustomerFactory(), [("", "Ankara", "39.9", "32.8")],
                     departs_at_0="2026-11-30", departs_at_1="07:00:00")
    response = dispatcher_browser.post(ADD, form)
    route = Route.objects.get()
    assert route.departs_at == datetime(2026, 11, 30, 6, tzinfo=UTC), "the form's time is the site's local time"
    page = dispatcher_browser.get(response["Location"]).content.decode()
    assert "2026-11-30 07:00 CET" in page
    assert "UTC" not in page.replace("(UTC)", "")
    assert "In Europe/Berlin time" in dispatcher_browser.get(ADD).content.decode()
