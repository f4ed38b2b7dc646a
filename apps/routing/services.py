"""Routing's writes: one function per use case; route (re)calculation publishes RouteCalculated in its transaction."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from apps import outbox
from apps.common.errors import ApplicationError
from apps.common.services import model_update
from apps.contracts import CustomerUpserted, DepotRef, PlannedStop, RouteCalculated
from apps.routing import geo
from apps.routing.models import Customer, Depot, Route, RouteStop, Truck

M = TypeVar("M", bound=models.Model)
KM = Decimal("0.001")

Status = Route.Status
# The route lifecycle: the statuses each status may move to. Completed and cancelled are final.
# (planned → calculated is route calculation's own step, not a lifecycle transition.)
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PLANNED: frozenset({Status.DISPATCHED, Status.CANCELLED}),
    Status.CALCULATED: frozenset({Status.DISPATCHED, Status.CANCELLED}),
    Status.DISPATCHED: frozenset({Status.COMPLETED, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    Status.CANCELLED: frozenset(),
}
# Re-planning is allowed until the route is finished, so a dispatched route can still be re-planned en route.
RECALCULABLE = frozenset({Status.PLANNED, Status.CALCULATED, Status.DISPATCHED})


@dataclass(frozen=True)
class StopInput:
    name: str
    lat: float
    lon: float


# --- Reference data ------------------------------------------------------------------


@transaction.atomic
def depot_create(*, name: str, lat: float, lon: float, address: str = "") -> Depot:
    return _created(Depot(name=name, lat=lat, lon=lon, address=address))


@transaction.atomic
def depot_update(*, depot: Depot, data: dict[str, Any]) -> Depot:
    return model_update(instance=depot, fields=["name", "address", "lat", "lon"], data=data)[0]


@transaction.atomic
def truck_create(
    *, plate: str, depot: Depot, capacity_kg: int, average_speed_kmh: int, active: bool = True
) -> Truck:
    return _created(
        Truck(plate=plate, depot=depot, capacity_kg=capacity_kg, average_speed_kmh=average_speed_kmh, active=active)
    )


@transaction.atomic
def truck_update(*, truck: Truck, data: dict[str, Any]) -> Truck:
    return model_update(
        instance=truck, fields=["plate", "depot", "capacity_kg", "average_speed_kmh", "active"], data=data
    )[0]


@transaction.atomic
def customer_create(*, name: str, email: str = "", phone: str = "") -> Customer:
    """Register a customer and announce it (CustomerUpserted, revision 1) in the same transaction."""
    customer = _created(Customer(name=name, email=email, phone=phone, changed_at=timezone.now()))
    outbox.publish(customer_upserted(customer))
    return customer


@transaction.atomic
def customer_update(*, customer: Customer, data: dict[str, Any]) -> Customer:
    """Change a customer; a real change bumps its revision and is announced (CustomerUpserted) in the transaction."""
    # The row lock serialises changes of one customer, so `revision` never repeats.
    locked = Customer.objects.select_for_update().get(pk=customer.pk)
    locked, changed = model_update(
        instance=locked, fields=["name", "email", "phone"], data=data,
        also={"revision": locked.revision + 1, "changed_at": timezone.now()},
    )
    if changed:
        outbox.publish(customer_upserted(locked))
    return locked


def customers_announce(*, batch_size: int = 500, on_batch: Callable[[int], object] | None = None) -> int:
    """Publish CustomerUpserted for every customer at its current revision (so a consumer that has never seen
    them learns them; one that has ignores the repeat); returns how many. `on_batch(announced so far)` is
    called after each committed batch (a command's progress line).

    A transaction per batch: each publish holds its key's advisory lock until commit, so one transaction for
    every customer ran out of PostgreSQL's lock table past a few thousand customers, and held up every
    publish on those keys until the end. A customer changed meanwhile publishes its own newer revision.
    """
    announced, last_pk = 0, 0
    while True:
        with transaction.atomic():
            batch = list(Customer.objects.filter(pk__gt=last_pk).order_by("pk")[:batch_size])
            for customer in batch:
                outbox.publish(customer_upserted(customer))
        if not batch:
            return announced
        announced += len(batch)
        last_pk = batch[-1].pk
        if on_batch is not None:
            on_batch(announced)


def customer_upserted(customer: Customer) -> CustomerUpserted:
    return CustomerUpserted(
        customer_id=customer.pk, revision=customer.revision, name=customer.name, changed_at=customer.changed_at
    )


def _created(instance: M) -> M:
    instance.full_clean()
    instance.save()
    return instance


# --- Routes ------------------------------------------------------------------------


@transaction.atomic
def route_calculate(
    *, truck: Truck, customer: Customer, stops: Sequence[StopInput], departs_at: datetime | None = None,
    stop_order: str = Route.StopOrder.OPTIMISED,
) -> Route:
    """Plan a new route for `truck` from its depot through `stops`, and publish RouteCalculated.

    `stop_order`: visit the stops as listed (`as_given`) or in the shortest tour found (`optimised`); either way
    each stop keeps its place in the list (`given_position`). Raises ApplicationError (naming the field) before
    writing anything when the input cannot be planned.
    """
    if stop_order not in {choice.value for choice in Route.StopOrder}:
        raise ApplicationError(f"unknown stop order {stop_order!r}", field="stop_order")
    _check_plannable(truck=truck, stops=stops)
    route = Route.objects.create(
        truck=truck, customer=customer, depot=truck.depot, departs_at=departs_at or timezone.now(),
        stop_order=stop_order,
    )
    return _plan(route=route, stops=stops)


@transaction.atomic
def route_recalculate(*, route: Route) -> Route:
    """Re-plan a route with its truck's current depot and speed; publishes a RouteCalculated with calculation + 1.

    A plan that would come out exactly as the current one is not made again: no new calculation, no event (each
    one costs invoicing a credit note, a new invoice and their numbers). `route.recalculated` says which it was.
    """
    # The row lock serialises recalculations of one route, so `calculation` never repeats.
    route = Route.objects.select_related("truck__depot", "customer").select_for_update(of=("self",)).get(pk=route.pk)
    if route.status not in RECALCULABLE:
        raise ApplicationError(f"a {route.status} route cannot be recalculated", field="status")
    current = list(route.stops.all())
    # Re-planned from the dispatcher's list (stops planned before it was kept: from their visiting order).
    given = sorted(current, key=lambda stop: (stop.given_position or stop.sequence, stop.sequence))
    stops = [StopInput(name=stop.name, lat=stop.lat, lon=stop.lon) for stop in given]
    _check_plannable(truck=route.truck, stops=stops)
    unchanged = route.depot_id == route.truck.depot_id and route.calculation > 0
    route.depot = route.truck.depot
    planned, arrival = _planned_stops(route=route, stops=stops)
    route.recalculated = not (unchanged and _same_plan(current, planned))
    if not route.recalculated:
        return route
    return _apply_plan(route=route, planned=planned, arrival=arrival)


@transaction.atomic
def route_dispatch(*, route: Route) -> Route:
    """The truck has left with the route: planned/calculated → dispatched."""
    return _move(route=route, to=Status.DISPATCHED)


@transaction.atomic
def route_complete(*, route: Route) -> Route:
    """The truck has finished the route: dispatched → completed (final)."""
    return _move(route=route, to=Status.COMPLETED)


@transaction.atomic
def route_cancel(*, route: Route, reason: str) -> Route:
    """Call the route off before it is completed; `reason` is kept on the route (final)."""
    reason = reason.strip()
    if not reason:
        raise ApplicationError("a cancellation needs a reason", field="reason")
    max_length = Route._meta.get_field("cancel_reason").max_length
    if len(reason) > max_length:
        raise ApplicationError(f"the reason is longer than {max_length} characters", field="reason")
    return _move(route=route, to=Status.CANCELLED, cancel_reason=reason)


def _move(*, route: Route, to: str, **changes: Any) -> Route:
    """Apply one lifecycle transition under the route's row lock, or refuse it with ApplicationError(field="status").

    No event is published: there is no contract for lifecycle changes and no consumer needs one (docs/architecture.md).
    """
    # The lock makes check-then-write atomic: of two concurrent transitions the second sees the first's status.
    route = Route.objects.select_for_update().get(pk=route.pk)
    if to not in ALLOWED_TRANSITIONS[route.status]:
        raise ApplicationError(f"a {route.status} route cannot be {to}", field="status")
    route.status, route.status_changed_at = to, timezone.now()
    for field, value in changes.items():
        setattr(route, field, value)
    route.save(update_fields=["status", "status_changed_at", *changes])
    return route


@transaction.atomic
def route_mark_invoiced(*, route_id: int, invoice_number: str, invoiced_at: datetime) -> Route:
    """Record the invoice issued for a route. Idempotent: a repeated or older invoice changes nothing.

    Raises Route.DoesNotExist for a route routing does not know.
    """
    route = Route.objects.select_for_update().get(pk=route_id)
    already_newer = route.invoiced_at is not None and route.invoiced_at >= invoiced_at
    if route.invoice_number == invoice_number or already_newer:
        return route
    route.invoice_number, route.invoiced_at = invoice_number, invoiced_at
    route.save(update_fields=["invoice_number", "invoiced_at"])
    return route


def _check_plannable(*, truck: Truck, stops: Sequence[StopInput]) -> None:
    if not truck.active:
        raise ApplicationError(f"truck {truck.plate} is inactive", field="truck")
    max_stops = settings.ROUTING_MAX_STOPS
    if not 1 <= len(stops) <= max_stops:
        raise ApplicationError(f"a route needs between 1 and {max_stops} stops, got {len(stops)}", field="stops")
    for stop in stops:
        if not (math.isfinite(stop.lat) and -90 <= stop.lat <= 90):
            raise ApplicationError(f"latitude {stop.lat} of {stop.name!r} is outside ±90", field="stops")
        if not (math.isfinite(stop.lon) and -180 <= stop.lon <= 180):
            raise ApplicationError(f"longitude {stop.lon} of {stop.name!r} is outside ±180", field="stops")


def _plan(*, route: Route, stops: Sequence[StopInput]) -> Route:
    """Order the stops, time every leg, replace the route's stops and publish the plan."""
    planned, arrival = _planned_stops(route=route, stops=stops)
    return _apply_plan(route=route, planned=planned, arrival=arrival)


def _planned_stops(*, route: Route, stops: Sequence[StopInput]) -> tuple[list[RouteStop], datetime]:
    """The stops in visiting order with their legs and arrivals (unsaved), and the time the tour ends."""
    truck = route.truck
    depot = geo.Point(route.depot.lat, route.depot.lon)
    if route.stop_order == Route.StopOrder.AS_GIVEN:
        order = list(range(len(stops)))
    else:
        order = geo.order_stops(depot, [geo.Point(s.lat, s.lon) for s in stops])
    dwell = timedelta(minutes=settings.ROUTING_DWELL_MINUTES)
    clock, previous, planned = route.departs_at, depot, []
    for sequence, index in enumerate(order, start=1):
        stop = stops[index]
        leg_km = Decimal(geo.haversine_km(previous, geo.Point(stop.lat, stop.lon))).quantize(KM)
        clock += timedelta(hours=float(leg_km) / truck.average_speed_kmh)
        planned.append(
            RouteStop(
                route=route, sequence=sequence, name=stop.name, lat=stop.lat, lon=stop.lon,
                leg_distance_km=leg_km, planned_arrival=_to_second(clock), given_position=index + 1,
            )
        )
        clock += dwell
        previous = geo.Point(stop.lat, stop.lon)
    return planned, clock


def _same_plan(current: Sequence[RouteStop], planned: Sequence[RouteStop]) -> bool:
    def shape(stops: Sequence[RouteStop]) -> list[tuple]:
        return [(s.sequence, s.name, s.lat, s.lon, s.leg_distance_km, s.planned_arrival) for s in stops]

    return shape(current) == shape(planned)


def _apply_plan(*, route: Route, planned: list[RouteStop], arrival: datetime) -> Route:
    route.stops.all().delete()
    RouteStop.objects.bulk_create(planned)
    route.distance_km = sum((stop.leg_distance_km for stop in planned), Decimal("0.000"))
    route.eta = _to_second(arrival)
    route.duration_minutes = round((arrival - route.departs_at).total_seconds() / 60)
    route.calculation += 1
    route.calculated_at = timezone.now()
    if route.status == Route.Status.PLANNED:
        route.status = Route.Status.CALCULATED
    route.save()
    outbox.publish(_route_calculated(route=route, stops=planned))
    route.recalculated = True
    return route


def _route_calculated(*, route: Route, stops: Sequence[RouteStop]) -> RouteCalculated:
    depot = route.depot
    return RouteCalculated(
        route_id=route.pk,
        calculation=route.calculation,
        truck_id=route.truck.pk,
        truck_plate=route.truck.plate,
        customer_id=route.customer.pk,
        customer_name=route.customer.name,
        depot=DepotRef(id=depot.pk, name=depot.name, lat=depot.lat, lon=depot.lon),
        stops=[
            PlannedStop(
                sequence=stop.sequence, name=stop.name, lat=stop.lat, lon=stop.lon,
                eta=stop.planned_arrival, leg_distance_km=stop.leg_distance_km,
            )
            for stop in stops
        ],
        distance_km=route.distance_km,
        duration_minutes=route.duration_minutes,
        eta=route.eta,
        calculated_at=route.calculated_at,
        departs_at=route.departs_at,
    )


def _to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)
