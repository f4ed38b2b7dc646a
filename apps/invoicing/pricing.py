"""Pure tariff arithmetic: a route's distance and stops → priced lines and totals, in Decimal, never floats.

Every line is rounded half-up to cents on its own; the net total is the sum of the rounded lines, VAT is
computed on that net total and rounded half-up, and gross = net + VAT. So the printed lines always add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal("100")


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Tariff:
    rate_per_km: Decimal
    fee_per_stop: Decimal
    minimum_charge: Decimal
    fuel_surcharge_percent: Decimal
    vat_rate_percent: Decimal


@dataclass(frozen=True)
class PricedLine:
    kind: str  # an InvoiceLine.Kind value
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class PricedRoute:
    lines: list[PricedLine]  # net lines followed by the VAT line
    net_total: Decimal
    vat_total: Decimal
    gross_total: Decimal


def price_route(*, tariff: Tariff, distance_km: Decimal, stop_count: int) -> PricedRoute:
    """Distance × rate, stops × fee, a top-up to the minimum charge, fuel surcharge on that, then VAT."""
    lines = [
        _line("distance", "Distance", distance_km, "km", tariff.rate_per_km),
        _line("stops", "Delivery stops", Decimal(stop_count), "stop", tariff.fee_per_stop),
    ]
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    if subtotal < tariff.minimum_charge:
        lines.append(_line("minimum", "Minimum charge adjustment", Decimal(1), "", tariff.minimum_charge - subtotal))
        subtotal = tariff.minimum_charge
    if tariff.fuel_surcharge_percent:
        rate = tariff.fuel_surcharge_percent
        lines.append(_line("fuel", f"Fuel surcharge {rate.normalize():f}%", subtotal, "", rate / HUNDRED))
    net_total = sum((line.amount for line in lines), Decimal("0.00"))
    vat_rate = tariff.vat_rate_percent
    vat = _line("vat", f"VAT {vat_rate.normalize():f}%", net_total, "", vat_rate / HUNDRED)
    return PricedRoute(
        lines=[*lines, vat], net_total=net_total, vat_total=vat.amount, gross_total=net_total + vat.amount
    )


def _line(kind: str, description: str, quantity: Decimal, unit: str, unit_price: Decimal) -> PricedLine:
    return PricedLine(kind, description, quantity, unit, unit_price, to_cents(quantity * unit_price))
