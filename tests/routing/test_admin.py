"""The dispatchers' admin: the dispatcher role, the recalculate action, a route's outbox events on its page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client

from apps import outbox
from apps.contracts import RouteCalculated
from apps.outbox.models import OutboxEvent
from apps.routing.models import Route, Truck
from tests.factories import invoice_generated, route_calculated
from tests.routing.conftest import DISPATCHER_PERMISSIONS
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
