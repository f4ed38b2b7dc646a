"""Strict query filters for the API: a value that is not what the parameter takes answers 400 naming it.

django-filter ignores an empty value and turns an unknown boolean into "no filter", so `?active=__main__` or
`?event_id=` used to list everything. Here they are refused, and ids are whole numbers within PostgreSQL's bigint,
refused by length and digit count before anything converts them (`int(Decimal("1e3000000"))` takes minutes).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from apps.common.converters import BIGINT_MAX

# "-9223372036854775807" is 20 characters; the rest is room for a float's way of writing it ("7.0e+16").
MAX_NUMBER_LENGTH = 32
# Digits left of the point (Decimal.adjusted() + 1) beyond bigint's 19: refused without building the integer.
_MAX_INTEGER_DIGITS = 19
_BOOLEANS = {"true", "false", "1", "0"}


class WholeNumberField(forms.IntegerField):
    """Also takes a whole number written as a float ("7e+16", "12.0"), as generic clients may send."""

    def to_python(self, value: object) -> int | None:
        if value not in self.empty_values and len(str(value)) > MAX_NUMBER_LENGTH:
            raise forms.ValidationError(f"At most {MAX_NUMBER_LENGTH} characters.", code="max_length")
        try:
            return super().to_python(value)
        except forms.ValidationError:
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
            if not number.is_finite():
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
            if number and number.adjusted() >= _MAX_INTEGER_DIGITS:
                raise forms.ValidationError(f"At most {_MAX_INTEGER_DIGITS} digits.", code="max_value") from None
            if number != number.to_integral_value():
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
            return int(number)


@extend_schema_field(OpenApiTypes.INT64)
class IdFilter(django_filters.NumberFilter):
    """An object id: a whole number within bigint (no decimals, no overflow reaching the database); an id that
    names no object just matches nothing."""

    field_class = WholeNumberField

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("min_value", -BIGINT_MAX)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


class StrictFilterSet(django_filters.FilterSet):
    """A FilterSet that refuses empty values of typed parameters and booleans other than true/false/1/0."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, query_filter in self.filters.items():
            if name not in self.data:
                continue
            value = self.data.get(name)
            if len(self.data.getlist(name)) > 1:
                self.form.add_error(name, "Give this parameter once.")
            elif value == "" and not isinstance(query_filter, django_filters.CharFilter):
                self.form.add_error(name, "This parameter needs a value.")
            elif isinstance(query_filter, django_filters.BooleanFilter) and str(value).lower() not in _BOOLEANS:
                self.form.add_error(name, "Must be true or false.")
        return valid and not self.form.errors


class StrictFilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend whose automatic FilterSets (`filterset_fields`) are strict too."""

    filterset_base = StrictFilterSet
