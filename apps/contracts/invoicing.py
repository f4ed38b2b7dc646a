"""Events published by invoicing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import Field

from apps.contracts.base import DomainEvent, Id, register_event


@register_event
class InvoiceGenerated(DomainEvent):
    """An invoice was issued for a route. Key and aggregate `route:<id>`: a route's invoice history stays in order."""

    context = "invoicing"
    event_name = "InvoiceGenerated"
    version = 1
    key_prefix = "route"
    key_field = "route_id"
    aggregate = "route"
    aggregate_field = "route_id"
    # Finance's fact, every field of it: no edit by someone else stands without finance's approval.
    approval_fields = frozenset({
        "invoice_id", "number", "route_id", "customer_id", "net_total", "vat_total", "gross_total", "currency",
        "issued_at",
    })

    invoice_id: Id
    number: str = Field(pattern=r"^LF-\d{4}-\d{6,10}$")  # a seventh digit from the millionth of a year
    route_id: Id
    customer_id: Id
    # Invoicing's columns: a total a consumer could not store is refused as it is read.
    net_total: Decimal = Field(max_digits=14, decimal_places=2)
    vat_total: Decimal = Field(max_digits=14, decimal_places=2)
    gross_total: Decimal = Field(max_digits=14, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    issued_at: datetime
