"""Numeric query filters and path parameters (apps/common/filters.py, apps/common/converters.py) refuse oversized
input by its length and digit count, before converting it: `int(Decimal("1e3000000"))` alone takes minutes."""

from __future__ import annotations

import pytest
from django import forms
from django.urls import Resolver404, resolve

from apps.common.filters import WholeNumberField


@pytest.mark.timeout(60)  # today's code would need minutes of CPU; the refusal takes microseconds
@pytest.mark.parametrize("text", ["1e3000000", "-1E+3000000", "9.9e999999999", "1e19"])
def test_a_whole_number_with_a_huge_exponent_is_refused_without_being_converted(text: str) -> None:
    with pytest.raises(forms.ValidationError):
        WholeNumberField().clean(text)


@pytest.mark.parametrize("text", ["0" * 40 + "7", " " * 30 + "7" + " " * 30, "7." + "0" * 40])
def test_a_whole_number_longer_than_any_bigint_can_be_written_is_refused(text: str) -> None:
    with pytest.raises(forms.ValidationError) as refused:
        WholeNumberField().clean(text)
    assert refused.value.code == "max_length"


@pytest.mark.parametrize(("text", "number"), [("7", 7), ("7e+16", 7 * 10**16), ("12.0", 12), (" 42 ", 42),
                                              ("9223372036854775807", 2**63 - 1), ("-5", -5)])
def test_whole_numbers_of_a_plausible_size_still_parse(text: str, number: int) -> None:
    assert WholeNumberField().clean(text) == number


@pytest.mark.parametrize("path", [
    "/api/v1/trucks/99999999999999999999/",
    "/api/v1/routes/" + "9" * 4000 + "/",
    "/api/v1/invoices/99999999999999999999/",
    "/api/v1/billing-accounts/" + "1" * 30 + "/",
    "/api/v1/dead-letters/99999999999999999999/replay/",
    "/api/v1/trucks/1e3000000/",
])
def test_an_id_path_parameter_beyond_bigint_matches_no_url(path: str) -> None:
    with pytest.raises(Resolver404):
        resolve(path)


@pytest.mark.parametrize("path", ["/api/v1/trucks/9223372036854775807/", "/api/v1/invoices/7/"])
def test_an_id_path_parameter_within_bigint_still_resolves(path: str) -> None:
    resolve(path)
