"""What a dispatcher manages: depots, trucks, customers and the routes trucks run for them."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

LATITUDE_VALIDATORS = [MinValueValidator(-90), MaxValueValidator(90)]
LONGITUDE_VALIDATORS = [MinValueValidator(-180), MaxValueValidator(180)]


class Depot(models.Model):
    """Where trucks are based; every route starts at its truck's depot."""

    name = models.CharField(max_length=200, unique=True)
    address = models.CharField(max_length=300, blank=True)
    lat = models.FloatField("latitude", validators=LATITUDE_VALIDATORS)
    lon = models.FloatField("longitude", validators=LONGITUDE_VALIDATORS)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Truck(models.Model):
    plate = models.CharField(max_length=20, unique=True)
    depot = models.ForeignKey(Depot, on_delete=models.PROTECT, related_name="trucks")
    capacity_kg = models.PositiveIntegerField("capacity (kg)", validators=[MinValueValidator(1)])
    average_speed_kmh = models.PositiveSmallIntegerField(
        "average speed (km/h)",
        validators=[MinValueValidator(1), MaxValueValidator(200)],
        help_text="Used for every leg of a route; each stop then adds the same fixed time for unloading.",
    )
    # Trucks are retired, never deleted: past routes keep pointing at them.
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["plate"]

    def __str__(self) -> str:
        return self.plate


class Customer(models.Model):
    """The shipper a route is run for. Routing's own copy: invoicing keeps billing data by this id."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    # Increments on every change and travels in CustomerUpserted, so consumers can drop stale copies.
    revision = models.PositiveIntegerField(default=1, editable=False)
    changed_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Route(models.Model):
    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        CALCULATED = "calculated", "Calculated"
        DISPATCHED = "dispatched", "Dispatched"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class StopOrder(models.TextChoices):
        AS_GIVEN = "as_given", "Keep the dispatcher's order"
        OPTIMISED = "optimised", "Optimise (shortest tour)"

    truck = models.ForeignKey(Truck, on_delete=models.PROTECT, related_name="routes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="routes")
    # The truck's depot at the last calculation: the start of the tour.
    depot = models.ForeignKey(Depot, on_delete=models.PROTECT, related_name="routes")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PLANNED, db_index=True)
    # Increments on every (re)calculation and travels in RouteCalculated, so consumers can drop stale plans.
    calculation = models.PositiveIntegerField(default=0)
    departs_at = models.DateTimeField(db_index=True)
    # How the stops are ordered, at calculation and every recalculation. The database default lets a release that
    # does not know the column keep inserting routes during a rolling deploy.
    stop_order = models.CharField(
        max_length=10, choices=StopOrder.choices, default=StopOrder.OPTIMISED, db_default=StopOrder.OPTIMISED,
    )
    distance_km = models.DecimalField(max_digits=10, decimal_places=3, default=0)
    duration_minutes = models.PositiveIntegerField(default=0)
    eta = models.DateTimeField("ETA", null=True, blank=True, help_text="When the last stop's unloading ends.")
    calculated_at = models.DateTimeField(null=True, blank=True)
    # Set by the lifecycle services (dispatch, complete, cancel); recalculation does not touch it.
    status_changed_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=300, blank=True)
    invoice_number = models.CharField(max_length=20, blank=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-departs_at", "-id"]

    def __str__(self) -> str:
        return f"Route {self.pk}"

    @property
    def invoiced(self) -> bool:
        return bool(self.invoice_number)


class RouteStop(models.Model):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="stops")
    sequence = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200)
    lat = models.FloatField("latitude", validators=LATITUDE_VALIDATORS)
    lon = models.FloatField("longitude", validators=LONGITUDE_VALIDATORS)
    leg_distance_km = models.DecimalField(
        max_digits=10, decimal_places=3, help_text="From the previous stop (or the depot for the first)."
    )
    planned_arrival = models.DateTimeField()
    given_position = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Where the dispatcher listed the stop (1 = first); empty for stops planned before it was kept.",
    )

    class Meta:
        ordering = ["route", "sequence"]
        constraints = [models.UniqueConstraint(fields=["route", "sequence"], name="routing_stop_sequence_unique")]

    def __str__(self) -> str:
        return f"{self.sequence}. {self.name}"
