"""Tariff arithmetic: Decimal throughout, each line and the VAT rounded half-up to cents."""

from __future__ import annotations

from decimal import Decimal

from apps.invoicing.pricing import Tariff, price_route


def tariff(**overrides: str) -> Tariff:
    fields = {"rate_per_km": "1.25", "fee_per_stop": "15.00", "minimum_charge": "0", "fuel_surcharge_percent": "7.5",
              "vat_rate_percent": "20"} | overrides
    return Tariff(**{name: Decimal(value) for name, value in fields.items()})


def amounts(priced) -> dict[str, Decimal]:  # type: ignore[no-untyped-def]
    return {line.kind: line.amount for line in priced.lines}


def test_hand_computed_route_prices_every_line_and_total() -> None:
    # 412.346 km × 1.25 = 515.4325 → 515.43; 3 × 15 = 45.00; fuel 7.5 % of 560.43 = 42.03225 → 42.03;
    # net 602.46; VAT 20 % = 120.492 → 120.49; gross 722.95.
    priced = price_route(tariff=tariff(), distance_km=Decimal("412.346"), stop_count=3)
    assert amounts(priced) == {
        "distance": Decimal("515.43"), "stops": Decimal("45.00"), "fuel": Decimal("42.03"), "vat": Decimal("120.49"),
    }
    assert (priced.net_total, priced.vat_total, priced.gross_total) == (
        Decimal("602.46"), Decimal("120.49"), Decimal("722.95"),
    )


def test_a_line_exactly_half_a_cent_rounds_up_not_to_even() -> None:
    # 10.100 km × 1.25 = 12.625: half-up gives 12.63 where banker's rounding would give 12.62.
    priced = price_route(tariff=tariff(fee_per_stop="0", fuel_surcharge_percent="0"), distance_km=Decimal("10.100"),
                         stop_count=1)
    assert amounts(priced)["distance"] == Decimal("12.63")


def test_vat_exactly_half_a_cent_rounds_up() -> None:
    # 8.2 km × 1.25 = 10.25 net; 18 % VAT = 1.845 → 1.85 (half-even would give 1.84).
    priced = price_route(tariff=tariff(fee_per_stop="0", fuel_surcharge_percent="0", vat_rate_percent="18"),
                         distance_km=Decimal("8.200"), stop_count=1)
    assert (priced.net_total, priced.vat_total, priced.gross_total) == (
        Decimal("10.25"), Decimal("1.85"), Decimal("12.10"),
    )


def test_short_route_is_topped_up_to_the_minimum_charge_before_the_fuel_surcharge() -> None:
    # 12.50 + 15.00 = 27.50 < 50 → adjustment 22.50; fuel 7.5 % of 50 = 3.75; net 53.75; VAT 10.75.
    priced = price_route(tariff=tariff(minimum_charge="50.00"), distance_km=Decimal("10.000"), stop_count=1)
    assert amounts(priced)["minimum"] == Decimal("22.50")
    assert amounts(priced)["fuel"] == Decimal("3.75")
    assert (priced.net_total, priced.gross_total) == (Decimal("53.75"), Decimal("64.50"))


def test_amounts_are_decimals_never_floats() -> None:
    priced = price_route(tariff=tariff(), distance_km=Decimal("1.001"), stop_count=2)
    assert all(isinstance(line.amount, Decimal) for line in priced.lines)
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in priced.lines)
