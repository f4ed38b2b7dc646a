"""Factories for routing's reference data, and a helper that plans routes through the real service."""

from __future__ import annotations

from typing import Any

import factory
from django.db.models import F

from apps.routing.models import Customer, Depot, Route, Truck
from apps.routing.services import StopInput, route_calculate

# Real places around the Istanbul depot of the seed data.
ANATOLIA_STOPS = [
    StopInput(name="Ankara", lat=39.9334, lon=32.8597),
    StopInput(name="Bursa", lat=40.1885, lon=29.0610),
    StopInput(name="Eskisehir", lat=39.7767, lon=30.5206),
    StopInput(name="Izmit", lat=40.7654, lon=29.9408),
]


class DepotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Depot

    name = factory.Sequence(lambda n: f"Istanbul Hub {n}")
    lat = 41.0082
    lon = 28.9784


class TruckFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Truck

    plate = factory.Sequence(lambda n: f"34 LF {n:03d}")
    depot = factory.SubFactory(DepotFactory)
    capacity_kg = 12_000
    average_speed_kmh = 60
    active = True


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Anadolu Textiles {n}")
    email = factory.LazyAttribute(lambda c: f"billing{c.name.split()[-1]}@example.com")


def calculated_route(**overrides: Any) -> Route:
    """A route planned by `route_calculate`, as the API would create it."""
    fields: dict[str, Any] = {"stops": ANATOLIA_STOPS}
    fields.update(overrides)
    fields.setdefault("truck", TruckFactory())
    fields.setdefault("customer", CustomerFactory())
    return route_calculate(**fields)


def slow_truck_down(route: Route) -> None:
    """Change an input of the route's plan (its truck's speed), so a recalculation has something to recalculate."""
    Truck.objects.filter(pk=route.truck_id).update(average_speed_kmh=F("average_speed_kmh") - 5)
