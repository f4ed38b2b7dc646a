"""Routing's reads: querysets for the API and admin, and a route's events as the outbox recorded them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import JSONField, Prefetch, Q, QuerySet
from django.db.models.functions import Cast

from apps.contracts import DomainEvent, InvoiceGenerated, RouteCalculated
from apps.outbox.models import OutboxEvent
from apps.routing import geo
from apps.routing.models import Customer, Depot, Route, RouteStop, Truck

KM = Decimal("0.001")


def depot_list() -> QuerySet[Depot]:
    return Depot.objects.all()


def truck_list() -> QuerySet[Truck]:
    return Truck.objects.select_related("depot")


def customer_list() -> QuerySet[Customer]:
    return Customer.objects.all()


def route_list() -> QuerySet[Route]:
    """Routes with what their representation needs, stops in visiting order."""
    return Route.objects.select_related("truck", "customer", "depot").prefetch_related(
        Prefetch("stops", queryset=RouteStop.objects.order_by("sequence"))
    )


def route_events(*, route: Route) -> QuerySet[OutboxEvent]:
    """The outbox rows about `route`, oldest first: its RouteCalculated events and invoicing's InvoiceGenerated.

    Read-only. Event type and key narrow the rows to the aggregate's; the payload's route_id decides. Rows an
    older release wrote carry the bare number as key (`7`, not `truck:7`): both are the route's.
    """
    return (
        OutboxEvent.objects.filter(
            Q(event_type=RouteCalculated.ce_type(), key__in=_keys(RouteCalculated, route.truck_id))
            | Q(event_type=InvoiceGenerated.ce_type(), key__in=_keys(InvoiceGenerated, route.pk))
        )
        .annotate(body=Cast("payload", JSONField()))
        .filter(body__route_id=route.pk)
        .order_by("id")
    )


def _keys(event_class: type[DomainEvent], value: int) -> list[str]:
    """The event type's key for `value`, and the bare number an older release used."""
    return [event_class.key_of(value), str(value)]


@dataclass(frozen=True)
class StopOrders:
    """An optimised route's stops as the dispatcher listed them and as planned, with each tour's length (km)."""

    given: list[RouteStop]
    planned: list[RouteStop]
    given_km: Decimal
    planned_km: Decimal

    @property
    def saved_km(self) -> Decimal:
        return self.given_km - self.planned_km


def route_stop_orders(*, route: Route) -> StopOrders | None:
    """The dispatcher's order beside the optimised one; None when the route keeps the dispatcher's order or its stops
    were planned before their listed places were kept."""
    planned = list(route.stops.order_by("sequence"))
    if route.stop_order != Route.StopOrder.OPTIMISED or any(stop.given_position is None for stop in planned):
        return None
    given = sorted(planned, key=lambda stop: stop.given_position or 0)
    return StopOrders(given=given, planned=planned, given_km=_tour_km(route.depot, given), planned_km=route.distance_km)


def _tour_km(depot: Depot, stops: list[RouteStop]) -> Decimal:
    """The tour's length as planning measures it: great-circle legs rounded to metres, summed."""
    points = [geo.Point(depot.lat, depot.lon), *(geo.Point(stop.lat, stop.lon) for stop in stops)]
    return sum(
        (Decimal(geo.haversine_km(a, b)).quantize(KM) for a, b in zip(points, points[1:], strict=False)),
        Decimal("0.000"),
    )
