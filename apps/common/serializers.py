"""Input serializers that take JSON types at their word: a string field takes a string, a number field a number.

DRF coerces (`"name": 0` becomes "0", `"lon": false` becomes 0.0, `"capacity_kg": "5"` becomes 5), so a client
sending the wrong type never hears of it. StrictInput refuses those with a 400 naming the field, and a string
longer than its documented maximum even when trimming its surrounding whitespace would make it fit, and a date and
time without a time zone offset (DRF would take it as the server's zone without a word).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.settings import api_settings


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The decimal strings the API takes, documented and enforced alike: digits required, a sign only if negatives
    are allowed, and a power-of-ten maximum (a percentage's 100) spelled exactly."""
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    whole, places = field.max_whole_digits, field.decimal_places
    fraction = rf"(?:\.\d{{1,{places}}})?"
    ceiling = ""
    maximum = field.max_value
    if maximum is not None and maximum >= 1 and maximum == 10 ** (len(str(int(maximum))) - 1):
        whole = len(str(int(maximum))) - 1  # below the maximum: one digit fewer than it has
        ceiling = rf"|{int(maximum)}(?:\.0{{1,{places}}})?"
    return rf"^{sign}(?:\d{{1,{whole}}}{fraction}|\.\d{{1,{places}}}{ceiling})$"


def json_type_problem(field: serializers.Field, value: Any) -> str | None:
    """Why `value` is the wrong JSON type for `field`, or None."""
    if value is None or isinstance(field, serializers.HiddenField):
        return None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(value, bool):
        return "Must not be true or false."
    if isinstance(field, (serializers.CharField, serializers.ChoiceField, serializers.DateTimeField,
                          serializers.DateField)):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.DecimalField) and getattr(
        field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING
    ):
        if not isinstance(value, str):
            return 'Must be a string of digits, e.g. "12.50".'
        if not re.fullmatch(decimal_pattern(field), value):
            return f"Must be a decimal number like 12.50, at most {field.decimal_places} digits after the point."
        return None
    if isinstance(field, (serializers.IntegerField, serializers.PrimaryKeyRelatedField)):
        return None if isinstance(value, int) else "Must be a whole number."
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, (int, float)) else "Must be a number."
    if isinstance(field, (serializers.ListSerializer, serializers.ListField)):
        return None if isinstance(value, list) else "Must be a list."
    return None


def raw_length_problem(field: serializers.Field, value: Any) -> str | None:
    """A string longer than the field's documented `maxLength`, counted as sent: DRF trims surrounding whitespace
    before its own length check, so without this a name of 201 characters starting with a newline would pass."""
    limit = getattr(field, "max_length", None)
    if isinstance(field, serializers.CharField) and limit is not None and isinstance(value, str) and len(value) > limit:
        return f"Ensure this field has no more than {limit} characters."
    return None


def naive_time_problem(field: serializers.Field, value: Any) -> str | None:
    """A date and time that names no time zone: refused rather than guessed."""
    if not isinstance(field, serializers.DateTimeField) or not isinstance(value, str):
        return None
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        return None  # not a date and time at all: DRF's own message says so
    if moment is not None and moment.tzinfo is None:
        return ("Include the time zone offset, e.g. 2026-11-26T06:00:00Z or 2026-11-26T09:00:00+03:00: "
                "a time without one is ambiguous.")
    return None


class StrictInput(serializers.Serializer):
    """Mix in first: `class InputSerializer(StrictInput, serializers.Serializer)` (or a ModelSerializer)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {
                name: [problem]
                for name, field in self.fields.items()
                if not field.read_only and name in data
                and (problem := json_type_problem(field, data[name]) or raw_length_problem(field, data[name])
                     or naive_time_problem(field, data[name]))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):
    """The body of every non-validation error: `{"detail": "…"}`."""

    detail = serializers.CharField()

    class Meta:
        ref_name = "Error"
