"""Factories for invoicing's models; invoices themselves are made by the service, as in production."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from importlib import import_module
from typing import Any

import factory
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.utils import timezone

from apps.consumers.models import DeadLetter
from apps.contracts import CustomerUpserted, PlannedStop, RouteCalculated
from apps.invoicing.models import BillingAccount, Invoice, KnownCustomer
from apps.invoicing.services.issuing import invoice_issue_for_route
from apps.outbox.models import OutboxEvent
from apps.routing.models import Route
from apps.routing.services import customer_create
from tests.consumers.support import deliver_outbox_row
from tests.factories import route_calculated
from tests.routing.factories import calculated_route


class KnownCustomerFactory(factory.django.DjangoModelFactory):
    """A customer in invoicing's directory, as CustomerUpserted would have left it."""

    class Meta:
        model = KnownCustomer
        django_get_or_create = ("customer_id",)

    customer_id = 3
    name = "Anadolu Textiles"
    revision = 1
    changed_at = factory.LazyFunction(timezone.now)


class BillingAccountFactory(factory.django.DjangoModelFactory):
    """An account for a customer of the directory (its KnownCustomer is made too, if missing)."""

    class Meta:
        model = BillingAccount
        django_get_or_create = ("customer_id",)

    customer_id = 3
    name = "Anadolu Textiles"
    billing_address = "Organize Sanayi 5\n16000 Bursa"
    vat_id = "TR1234567890"
    currency = "EUR"
    rate_per_km = Decimal("1.2500")
    fee_per_stop = Decimal("15.00")
    minimum_charge = Decimal("0.00")
    fuel_surcharge_percent = Decimal("7.50")
    vat_rate_percent = Decimal("20.00")

    @classmethod
    def _create(cls, model_class: type[BillingAccount], *args: Any, **kwargs: Any) -> BillingAccount:
        # An account is for a customer routing has announced: the directory entry comes first (kept if it exists).
        KnownCustomerFactory(customer_id=kwargs["customer_id"], name=kwargs["name"])
        return super()._create(model_class, *args, **kwargs)


def issued_invoice(route: RouteCalculated | None = None, **route_overrides: Any) -> Invoice:
    """An invoice issued through the service for a RouteCalculated (billing account made if missing)."""
    route = route or route_calculated(**route_overrides)
    BillingAccountFactory(customer_id=route.customer_id)
    return invoice_issue_for_route(route=route)


def invoice_for_route(route_id: int = 31) -> Invoice:
    """An issued invoice for a three-stop route of customer 3."""
    return issued_invoice(three_stop_route(route_id=route_id))


FINANCE_PERMISSIONS = [
    *import_module("apps.invoicing.migrations.0002_finance_group").FINANCE_PERMISSIONS,
    "invoicing.view_knowncustomer",  # 0004_finance_customer_directory
    "consumers.approve_billing_edit", "consumers.view_deadletteredit",  # consumers 0014_billing_edit_roles
]


def role_group(name: str, permissions: list[str]) -> Group:
    """The role group with at least `permissions`: transactional tests flush the groups data migrations made."""
    group, _ = Group.objects.get_or_create(name=name)
    for permission in permissions:
        app_label, codename = permission.split(".")
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True

    @factory.post_generation
    def role(self, create: bool, group: str | None, permissions: list[str] | None = None, **_: Any) -> None:
        """`role="finance"`: the finance group; other roles get `role__permissions=[...]`, if any."""
        if create and group:
            default = FINANCE_PERMISSIONS if group == "finance" else []
            self.groups.add(role_group(group, permissions if permissions is not None else default))


def three_stop_route(**overrides: Any) -> RouteCalculated:
    """Route 412.346 km with 3 stops; with the default account: net 602.46, VAT 120.49, gross 722.95."""
    base = route_calculated()
    legs = [("Bursa", "100.000"), ("Eskisehir", "150.123"), ("Ankara", "162.223")]
    stops = [
        PlannedStop(sequence=i, name=name, lat=40.0, lon=30.0, eta=base.calculated_at + timedelta(hours=2 * i),
                    leg_distance_km=Decimal(km))
        for i, (name, km) in enumerate(legs, start=1)
    ]
    return route_calculated(**{"stops": stops, "distance_km": Decimal("412.346"), **overrides})


def unbilled_route_dead_letter(*, customer_name: str = "Ege Foods") -> tuple[Route, DeadLetter]:
    """A route whose customer invoicing knows but has no billing account for, and the dead letter invoicing's
    consumer leaves for its RouteCalculated: made by routing's services, applied through invoicing's handlers."""
    with transaction.atomic():
        customer = customer_create(name=customer_name, email="billing@ege.example")
    announced = OutboxEvent.objects.filter(event_type=CustomerUpserted.ce_type()).latest("id")
    assert deliver_outbox_row(announced, group="invoicing") is None
    route = calculated_route(customer=customer)
    calculated = OutboxEvent.objects.filter(event_type=RouteCalculated.ce_type()).latest("id")
    dead_letter = deliver_outbox_row(calculated, group="invoicing")
    assert dead_letter is not None, "invoicing applied a route whose customer has no billing account"
    return route, dead_letter
