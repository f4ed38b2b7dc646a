"""Event contracts: identity, topics, keys and schema checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from apps.contracts import EVENT_TYPES, InvoiceGenerated, RouteCalculated, all_topics
from tests.factories import invoice_generated, route_calculated


def test_cloud_event_types_are_versioned_per_context() -> None:
    assert RouteCalculated.ce_type() == "logiflow.routing.RouteCalculated.v1"
    assert InvoiceGenerated.ce_type() == "logiflow.invoicing.InvoiceGenerated.v1"
    assert EVENT_TYPES[RouteCalculated.ce_type()] is RouteCalculated
    assert all_topics() == ["invoicing.events", "routing.events"]


def test_route_events_are_keyed_by_truck_and_invoice_events_by_route() -> None:
    assert route_calculated(truck_id=9).partition_key() == "9"
    assert invoice_generated(route_id=5).partition_key() == "5"


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
