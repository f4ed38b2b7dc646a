"""Event contracts shared by the bounded contexts; routing and invoicing import these, never each other."""

from apps.contracts.base import EVENT_TYPES, DomainEvent, all_topics, event_class, register_event
from apps.contracts.invoicing import InvoiceGenerated
from apps.contracts.routing import CustomerUpserted, DepotRef, PlannedStop, RouteCalculated

__all__ = [
    "CustomerUpserted",
    "EVENT_TYPES",
    "DepotRef",
    "DomainEvent",
    "InvoiceGenerated",
    "PlannedStop",
    "RouteCalculated",
    "all_topics",
    "event_class",
    "register_event",
]
