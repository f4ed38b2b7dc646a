"""Route (re)calculation: plan, timing, the RouteCalculated it publishes, and what it refuses; the route lifecycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.test import override_settings

from apps.common.errors import ApplicationError
from apps.contracts import RouteCalculated
from apps.outbox.models import OutboxEvent
from apps.routing.geo import Point, haversine_km, optimal_order
from apps.routing.models import Route, RouteStop
from apps.routing.services import (
    StopInput,
    route_calculate,
    route_cancel,
    route_complete,
    route_dispatch,
    route_mark_invoiced,
    route_recalculate,
    truck_update,
)
from tests.routing.factories import ANATOLIA_STOPS, CustomerFactory, DepotFactory, TruckFactory, calculated_route, slow_truck_down
from tests.support.locks import race_on_lock

DEPARTURE = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def _events(route: Route) -> list[RouteCalculated]:
    rows = OutboxEvent.objects.filter(event_type=RouteCalculated.ce_type()).order_by("id")
    return [
        RouteCalculated.model_validate_json(row.payload)
        for row in rows
        if json.loads(row.payload)["route_id"] == route.pk
    ]


@pytest.mark.django_db
@override_settings(ROUTING_DWELL_MINUTES=15)
def test_calculation_times_each_leg_at_truck_speed_plus_dwell() -> None:
    truck = TruckFactory(average_speed_kmh=80, depot=DepotFactory(lat=41.0082, lon=28.9784))
    route = calculated_route(truck=truck, stops=[StopInput("Ankara", 39.9334, 32.8597)], departs_at=DEPARTURE)
    (stop,) = route.stops.all()
    leg_km = haversine_km(Point(41.0082, 28.9784), Point(39.9334, 32.8597))
    assert float(stop.leg_distance_km) == pytest.approx(leg_km, abs=0.001)
    assert float(route.distance_km) == pytest.approx(leg_km, abs=0.001)
    driving = timedelta(hours=float(stop.leg_distance_km) / 80)
    assert stop.planned_arrival == (DEPARTURE + driving).replace(microsecond=0)
    assert route.eta == (DEPARTURE + driving + timedelta(minutes=15)).replace(microsecond=0)
    assert route.duration_minutes == round((driving + timedelta(minutes=15)).total_seconds() / 60)


@pytest.mark.django_db
def test_dwell_time_is_read_when_calculating_not_at_import() -> None:
    with override_settings(ROUTING_DWELL_MINUTES=0):
        short = calculated_route(departs_at=DEPARTURE)
    with override_settings(ROUTING_DWELL_MINUTES=60):
        long = calculated_route(departs_at=DEPARTURE)
    assert long.duration_minutes - short.duration_minutes == 60 * len(ANATOLIA_STOPS)


@pytest.mark.django_db
def test_calculation_orders_stops_from_the_depot_and_sums_the_legs() -> None:
    route = calculated_route(departs_at=DEPARTURE)
    stops = list(route.stops.all())
    assert [stop.sequence for stop in stops] == [1, 2, 3, 4]
    depot = Point(route.depot.lat, route.depot.lon)
    shortest = optimal_order(depot, [Point(stop.lat, stop.lon) for stop in ANATOLIA_STOPS])
    assert [stop.name for stop in stops] == [ANATOLIA_STOPS[i].name for i in shortest]
    assert stops[-1].name == "Ankara"  # the furthest from Istanbul, so the tour ends there
    assert route.distance_km == sum(stop.leg_distance_km for stop in stops)
    arrivals = [stop.planned_arrival for stop in stops]
    assert arrivals == sorted(arrivals) and route.eta > arrivals[-1]
    assert route.status == Route.Status.CALCULATED and route.calculation == 1


@pytest.mark.django_db
def test_calculation_publishes_one_route_calculated_matching_the_saved_route() -> None:
    route = calculated_route(departs_at=DEPARTURE)
    row = OutboxEvent.objects.get()
    event = RouteCalculated.model_validate_json(row.payload)
    assert row.key == f"truck:{route.truck_id}"
    assert (event.route_id, event.calculation, event.truck_id, event.truck_plate) == (
        route.pk, 1, route.truck_id, route.truck.plate
    )
    assert (event.customer_id, event.customer_name) == (route.customer_id, route.customer.name)
    assert event.depot.id == route.depot_id
    assert [(s.sequence, s.name, s.eta, s.leg_distance_km) for s in event.stops] == [
        (s.sequence, s.name, s.planned_arrival, s.leg_distance_km) for s in route.stops.all()
    ]
    assert (event.distance_km, event.duration_minutes, event.eta) == (
        route.distance_km, route.duration_minutes, route.eta
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stops", "field"),
    [
        ([], "stops"),
        ([StopInput("North of the pole", 90.5, 0)], "stops"),
        ([StopInput("Past the antimeridian", 0, -180.1)], "stops"),
        ([StopInput("Nowhere", float("nan"), 0)], "stops"),
        ([StopInput(f"Stop {i}", 40, 30 + i / 100) for i in range(4)], "stops"),  # over the maximum of 3
    ],
)
@override_settings(ROUTING_MAX_STOPS=3)
def test_unplannable_stops_are_refused_before_anything_is_written(stops: list[StopInput], field: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        route_calculate(truck=TruckFactory(), customer=CustomerFactory(), stops=stops)
    assert refused.value.field == field
    assert not Route.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_inactive_truck_gets_no_route() -> None:
    with pytest.raises(ApplicationError, match="inactive") as refused:
        calculated_route(truck=TruckFactory(active=False))
    assert refused.value.field == "truck"
    assert not Route.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_recalculation_publishes_a_new_event_with_the_next_calculation_keyed_by_truck() -> None:
    route = calculated_route(departs_at=DEPARTURE)
    # The truck moves to Ankara: the tour now starts there, so the plan changes.
    truck_update(truck=route.truck, data={"depot": DepotFactory(name="Ankara Hub", lat=39.93, lon=32.85)})
    recalculated = route_recalculate(route=route)
    first, second = _events(route)
    assert (first.calculation, second.calculation) == (1, 2)
    assert recalculated.calculation == 2
    assert [row.key for row in OutboxEvent.objects.all()] == [f"truck:{route.truck_id}"] * 2
    assert second.depot.name == "Ankara Hub" and second.stops[0].name == "Ankara"
    assert list(RouteStop.objects.filter(route=route).values_list("name", flat=True)) == [s.name for s in second.stops]


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Route.Status.COMPLETED, Route.Status.CANCELLED])
def test_finished_routes_are_not_recalculated(status: str) -> None:
    route = calculated_route()
    Route.objects.filter(pk=route.pk).update(status=status)
    with pytest.raises(ApplicationError, match=status):
        route_recalculate(route=route)
    assert OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_marking_invoiced_twice_or_with_an_older_invoice_changes_nothing() -> None:
    route = calculated_route()
    issued = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    route_mark_invoiced(route_id=route.pk, invoice_number="LF-2026-000002", invoiced_at=issued)
    route_mark_invoiced(route_id=route.pk, invoice_number="LF-2026-000002", invoiced_at=issued + timedelta(hours=1))
    route_mark_invoiced(route_id=route.pk, invoice_number="LF-2026-000001", invoiced_at=issued - timedelta(hours=1))
    route.refresh_from_db()
    assert (route.invoice_number, route.invoiced_at, route.invoiced) == ("LF-2026-000002", issued, True)


@pytest.mark.django_db(transaction=True)
def test_database_failure_inside_the_service_leaves_neither_route_nor_event(failing_outbox_insert: None) -> None:
    truck, customer = TruckFactory(), CustomerFactory()
    with pytest.raises(Exception, match="forced failure"):
        route_calculate(truck=truck, customer=customer, stops=ANATOLIA_STOPS)
    assert not Route.objects.exists()
    assert not RouteStop.objects.exists()
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_recalculations_of_a_route_get_distinct_calculation_numbers() -> None:
    """The first recalculation holds its transaction open; the second must wait for it, then see calculation 2."""
    route = calculated_route()
    slow_truck_down(route)
    # The second changes the plan's input again (not locked by the first), then waits for the route's lock.
    errors = race_on_lock(
        hold=lambda: route_recalculate(route=route),
        then=lambda: (slow_truck_down(route), route_recalculate(route=route)),
    )
    assert not errors
    assert sorted(event.calculation for event in _events(route)) == [1, 2, 3]
    route.refresh_from_db()
    assert route.calculation == 3


# --- Lifecycle -----------------------------------------------------------------------

S = Route.Status
LIFECYCLE = {
    "dispatch": lambda route: route_dispatch(route=route),
    "complete": lambda route: route_complete(route=route),
    "cancel": lambda route: route_cancel(route=route, reason="customer closed for inventory"),
}
# Written out here, not read from the services: the test states the rule the services must follow.
ALLOWED = {
    (S.PLANNED, "dispatch"): S.DISPATCHED, (S.CALCULATED, "dispatch"): S.DISPATCHED,
    (S.DISPATCHED, "complete"): S.COMPLETED,
    (S.PLANNED, "cancel"): S.CANCELLED, (S.CALCULATED, "cancel"): S.CANCELLED, (S.DISPATCHED, "cancel"): S.CANCELLED,
}


@pytest.mark.django_db
@pytest.mark.parametrize("action", list(LIFECYCLE))
@pytest.mark.parametrize("status", list(S))
def test_lifecycle_allows_exactly_the_documented_transitions_and_refuses_the_rest(status: str, action: str) -> None:
    route = calculated_route()
    Route.objects.filter(pk=route.pk).update(status=status)
    expected = ALLOWED.get((status, action))
    if expected is None:
        with pytest.raises(ApplicationError, match=f"a {status} route cannot be") as refused:
            LIFECYCLE[action](route)
        assert refused.value.field == "status"
        route.refresh_from_db()
        assert (route.status, route.status_changed_at, route.cancel_reason) == (status, None, "")
    else:
        changed = LIFECYCLE[action](route)
        route.refresh_from_db()
        assert changed.status == route.status == expected
        assert route.status_changed_at is not None


@pytest.mark.django_db
def test_dispatch_complete_and_cancel_publish_no_event() -> None:
    completed, cancelled = calculated_route(), calculated_route()
    route_complete(route=route_dispatch(route=completed))
    route_cancel(route=route_dispatch(route=cancelled), reason="truck broke down")
    assert OutboxEvent.objects.count() == 2, "only the two RouteCalculated of the calculations"


@pytest.mark.django_db
def test_cancel_keeps_the_reason_and_refuses_a_blank_one() -> None:
    route = calculated_route()
    with pytest.raises(ApplicationError) as refused:
        route_cancel(route=route, reason="   ")
    assert refused.value.field == "reason"
    assert Route.objects.get(pk=route.pk).status == S.CALCULATED
    assert route_cancel(route=route, reason=" customer closed ").cancel_reason == "customer closed"


@pytest.mark.django_db
def test_dispatched_route_can_be_recalculated_and_stays_dispatched() -> None:
    route = route_dispatch(route=calculated_route())
    slow_truck_down(route)
    recalculated = route_recalculate(route=route)
    assert (recalculated.status, recalculated.calculation) == (S.DISPATCHED, 2)
    assert [event.calculation for event in _events(route)] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_complete_and_cancel_of_one_route_let_exactly_one_win() -> None:
    """Completion holds its transaction open; the cancellation must wait for the row lock, then see `completed`."""
    route = route_dispatch(route=calculated_route())
    errors = race_on_lock(hold=lambda: route_complete(route=route), then=lambda: route_cancel(route=route, reason="too late"))
    assert [str(error) for error in errors] == ["a completed route cannot be cancelled"]
    route.refresh_from_db()
    assert (route.status, route.cancel_reason) == (S.COMPLETED, "")


@pytest.mark.django_db
def test_recalculating_an_unchanged_plan_changes_nothing_and_publishes_nothing() -> None:
    route = calculated_route(departs_at=DEPARTURE)
    stops_before = list(RouteStop.objects.filter(route=route).values_list("id", "planned_arrival"))
    recalculated = route_recalculate(route=route)
    assert recalculated.recalculated is False and recalculated.calculation == 1
    route.refresh_from_db()
    assert route.calculation == 1
    assert list(RouteStop.objects.filter(route=route).values_list("id", "planned_arrival")) == stops_before
    assert OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_route_kept_in_the_dispatchers_order_keeps_it_when_recalculated() -> None:
    route = calculated_route(stop_order=Route.StopOrder.AS_GIVEN)
    given = [stop.name for stop in ANATOLIA_STOPS]
    assert [stop.name for stop in route.stops.order_by("sequence")] == given
    slow_truck_down(route)
    route = route_recalculate(route=route)
    assert route.recalculated and [stop.name for stop in route.stops.order_by("sequence")] == given
    assert [stop.given_position for stop in route.stops.order_by("sequence")] == [1, 2, 3, 4]


@pytest.mark.django_db
def test_an_optimised_route_remembers_where_each_stop_was_listed_across_recalculations() -> None:
    route = calculated_route()
    listed = {stop.name: position for position, stop in enumerate(ANATOLIA_STOPS, start=1)}
    assert {stop.name: stop.given_position for stop in route.stops.all()} == listed
    slow_truck_down(route)
    route_recalculate(route=route)
    assert {stop.name: stop.given_position for stop in route.stops.all()} == listed


@pytest.mark.django_db
def test_an_unknown_stop_order_is_refused_naming_the_field() -> None:
    with pytest.raises(ApplicationError) as refused:
        calculated_route(stop_order="alphabetical")
    assert refused.value.field == "stop_order" and not Route.objects.exists()
