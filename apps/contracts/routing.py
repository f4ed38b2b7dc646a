"""Events published by routing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from apps.contracts.base import INTEGER_MAX, Contract, Counter, DomainEvent, Id, register_event

# What a route may carry, whoever wrote the topic: an invoice renders every stop, so these bound its PDF. The
# routing API refuses more (ROUTING_MAX_STOPS is capped at MAX_STOPS); names are routing's columns (200).
MAX_STOPS = 200
MAX_NAME_LENGTH = 200
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class DepotRef(Contract):
    id: Id
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    lat: Latitude
    lon: Longitude


class PlannedStop(Contract):
    sequence: int = Field(ge=1, le=MAX_STOPS)
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    lat: Latitude
    lon: Longitude
    eta: datetime
    leg_distance_km: Decimal = Field(ge=0, max_digits=10, decimal_places=3)  # routing's column


@register_event
class RouteCalculated(DomainEvent):
    """A route was (re)calculated. Key `truck:<id>`: one truck's plan changes share a partition and arrive in order.
    Aggregate `route:<id>`: a consumer holds back a route's later calculations behind its failed one, nothing else.
    """

    context = "routing"
    event_name = "RouteCalculated"
    version = 1
    key_prefix = "truck"
    key_field = "truck_id"
    aggregate = "route"
    aggregate_field = "route_id"
    # Which route and calculation is billed (and which invoice a newer one credits), for whom, and what is priced
    # (distance, stop count); the truck is the key. Names, depot, times only describe the tour on the document.
    approval_fields = frozenset({"route_id", "calculation", "truck_id", "customer_id", "distance_km", "stops"})

    route_id: Id
    # Increments on every recalculation, so a consumer can tell a stale event from the newest one.
    calculation: Counter
    truck_id: Id
    truck_plate: str = Field(min_length=1, max_length=20)
    customer_id: Id
    customer_name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    depot: DepotRef
    stops: list[PlannedStop] = Field(min_length=1, max_length=MAX_STOPS)
    distance_km: Decimal = Field(ge=0, max_digits=10, decimal_places=3)
    duration_minutes: int = Field(ge=0, le=INTEGER_MAX)
    eta: datetime
    calculated_at: datetime
    # When the truck leaves the depot as planned. Optional: events written before it was added have none.
    departs_at: datetime | None = None


@register_event
class CustomerUpserted(DomainEvent):
    """A customer was registered or changed in routing (or re-announced by `publish_customers`).

    Key `customer:<id>` and aggregate `customer:<id>`: one customer's changes arrive in order, and a consumer holds
    back a customer's later changes behind its failed one. A consumer keeps the highest `revision` it has seen and
    ignores the rest: a re-announcement repeats the current revision and changes nothing.
    """

    context = "routing"
    event_name = "CustomerUpserted"
    version = 1
    key_prefix = "customer"
    key_field = "customer_id"
    aggregate = "customer"
    aggregate_field = "customer_id"
    approval_fields = frozenset({"customer_id", "revision"})  # which customer, and whether the change wins

    customer_id: Id
    # Increments on every change of the customer in routing.
    revision: Counter
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    changed_at: datetime
