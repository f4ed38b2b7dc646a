"""Event contracts: identity, topics, keys and schema checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from apps.contracts import EVENT_TYPES, CustomerUpserted, DomainEvent, InvoiceGenerated, RouteCalculated, all_topics
from apps.contracts.base import register_event
from tests.factories import invoice_generated, route_calculated


def test_cloud_event_types_are_versioned_per_context() -> None:
    assert RouteCalculated.ce_type() == "logiflow.routing.RouteCalculated.v1"
    assert InvoiceGenerated.ce_type() == "logiflow.invoicing.InvoiceGenerated.v1"
    assert EVENT_TYPES[RouteCalculated.ce_type()] is RouteCalculated
    assert all_topics() == ["invoicing.events", "routing.events"]


def test_keys_name_their_aggregate_route_events_by_truck_customer_events_by_customer_invoices_by_route() -> None:
    assert route_calculated(truck_id=9).partition_key() == "truck:9"
    assert customer_upserted(customer_id=9).partition_key() == "customer:9"
    assert invoice_generated(route_id=5).partition_key() == "route:5"


def test_truck_5_and_customer_5_are_different_keys_on_one_topic() -> None:
    assert RouteCalculated.topic() == CustomerUpserted.topic()
    assert route_calculated(truck_id=5).partition_key() != customer_upserted(customer_id=5).partition_key()


def test_event_types_on_one_topic_never_share_a_key_space() -> None:
    """A key prefix names one aggregate on its topic: two event types share a key space only if they key by the
    same aggregate (then their order is meant to be kept together); otherwise their prefixes differ."""
    aggregates: dict[tuple[str, str], tuple[str, str]] = {}
    for event_class in EVENT_TYPES.values():
        assert event_class.key_prefix.isidentifier() and event_class.key_prefix.islower(), event_class
        space = (event_class.topic(), event_class.key_prefix)
        aggregates.setdefault(space, (event_class.key_prefix, event_class.key_field))
        assert aggregates[space] == (event_class.key_prefix, event_class.key_field), (
            f"{event_class.__name__} keys {event_class.key_field} with the prefix {event_class.key_prefix!r}, "
            f"which another event type on {event_class.topic()} uses for {aggregates[space][1]}"
        )


def test_an_event_type_whose_key_prefix_another_aggregate_uses_on_its_topic_is_refused() -> None:
    class TruckRetired(DomainEvent):  # keys by its own field, but with the customers' prefix on routing.events
        context = "routing"
        event_name = "TruckRetired"
        version = 1
        key_prefix = "customer"
        key_field = "truck_id"
        aggregate = "truck"
        aggregate_field = "truck_id"

        truck_id: int

    with pytest.raises(ValueError, match="key prefix 'customer'"):
        register_event(TruckRetired)
    assert TruckRetired.ce_type() not in EVENT_TYPES


def test_an_event_type_without_a_key_prefix_or_aggregate_is_refused() -> None:
    class Unkeyed(DomainEvent):
        context = "routing"
        event_name = "Unkeyed"
        version = 1
        key_field = "truck_id"

        truck_id: int

    with pytest.raises(ValueError, match="key_prefix"):
        register_event(Unkeyed)


def test_each_event_names_the_aggregate_it_changes_whatever_its_key() -> None:
    assert route_calculated(route_id=12, truck_id=5).aggregate_id() == "route:12"
    assert customer_upserted(customer_id=5).aggregate_id() == "customer:5"
    assert invoice_generated(route_id=12).aggregate_id() == "route:12"


def customer_upserted(**overrides: object) -> CustomerUpserted:
    fields: dict[str, object] = {"customer_id": 3, "revision": 1, "name": "Anadolu Textiles",
                                 "changed_at": datetime(2026, 11, 26, 8, 0, tzinfo=UTC)}
    return CustomerUpserted(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("truck_id", 0), ("stops", []), ("distance_km", "-1"), ("truck_plate", "")],
)
def test_route_calculated_rejects_invalid_fields(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        route_calculated(**{field: value})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        invoice_generated(surprise=1)


def test_json_round_trip_keeps_decimals_exact() -> None:
    event = invoice_generated(gross_total="120.10")
    assert InvoiceGenerated.model_validate_json(event.model_dump_json()) == event
