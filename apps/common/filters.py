"""Strict query filters for the API: a value that is not what the parameter takes answers 400 naming it.

django-filter ignores an empty value and turns an unknown boolean into "no filter", so `?active=__main__` or
`?event_id=` used to list everything. Here they are refused, and ids are whole numbers within PostgreSQL's bigint.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

BIGINT_MAX = 2**63 - 1
_BOOLEANS = {"true", "false", "1", "0"}


class WholeNumberField(forms.IntegerField):
    """Also takes a whole number written as a float ("7e+16", "12.0"), as generic clients may send."""

    def to_python(self, value: object) -> int | None:
        try:
            return super().to_python(value)
        except forms.ValidationError:
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
            if not number.is_finite() or number != number.to_integral_value():
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
