"""Factories for event payloads shared by the tests of several apps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from apps.contracts import DepotRef, InvoiceGenerated, PlannedStop, RouteCalculated


def route_calculated(**overrides: Any) -> RouteCalculated:
    calculated_at = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    fields: dict[str, Any] = {
        "route_id": 1,
        "calculation": 1,
        "truck_id": 7,
        "truck_plate": "34 LF 007",
        "customer_id": 3,
        "customer_name": "Anadolu Textiles",
        "depot": DepotRef(id=1, name="Istanbul Hub", lat=41.0082, lon=28.9784),
        "stops": [
            PlannedStop(
                sequence=1, name="Ankara", lat=39.9334, lon=32.8597,
                eta=calculated_at + timedelta(hours=5), leg_distance_km=Decimal("350.123"),
            )
        ],
        "distance_km": Decimal("350.123"),
        "duration_minutes": 300,
        "eta": calculated_at + timedelta(hours=5),
        "calculated_at": calculated_at,
    }
    fields.update(overrides)
    return RouteCalculated(**fields)


def invoice_generated(**overrides: Any) -> InvoiceGenerated:
    fields: dict[str, Any] = {
        "invoice_id": 1,
        "number": "LF-2026-000001",
        "route_id": 1,
        "customer_id": 3,
        "net_total": Decimal("100.00"),
        "vat_total": Decimal("20.00"),
        "gross_total": Decimal("120.00"),
        "currency": "EUR",
        "issued_at": datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return InvoiceGenerated(**fields)
