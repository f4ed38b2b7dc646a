"""OpenAPI post-processing: every operation documents the error answers the API can give, with their bodies.

The views raise them through shared machinery (authentication, permissions, throttles, validation, the
exception handler in apps/common/errors.py), so they are added here once instead of on every view.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular import openapi
from rest_framework import serializers

from apps.common.filters import BIGINT_MAX
from apps.common.serializers import decimal_pattern

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "example": {"detail": "Authentication credentials were not provided."},
}
VALIDATION_ERRORS = {
    "type": "object",
    "description": "Each input at fault and its errors (a list of messages, or nested errors for nested input); "
    "`detail` for an error of the request as a whole.",
    "additionalProperties": {},
    "example": {"stops": ["Ensure this field has no more than 50 elements."]},
}
_BODY_METHODS = {"post", "put", "patch"}
NO_NUL = "^[^\\u0000]*$"
BLANK_ALTERNATIVE = {"type": "string", "maxLength": 0}
# A non-blank field trims whitespace first (Python's str.strip, which also strips \x1c-\x1f and \x85, unlike
# ECMA's \s), so it needs one character that is neither whitespace nor NUL.
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000\\u001c-\\u001f\\u0085][^\\u0000]*$"


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("ValidationErrors", VALIDATION_ERRORS)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            _document_errors(path, method, operation)
    return result


def _document_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    anonymous = {} in operation.get("security", [{}])
    has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    if method in _BODY_METHODS or has_query:
        _add(responses, "400", "ValidationErrors", "The input is invalid; the body names each input at fault.")
    if not anonymous:
        _add(responses, "401", "Error", "No valid credentials (send `Authorization: Token <key>` or a session).",
             headers={"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Token`"}})
        _add(responses, "403", "Error", "Authenticated, but the user's roles do not allow this.")
    paged = any(p.get("name") == "page" for p in operation.get("parameters", []))
    if "{" in path or paged:
        _add(responses, "404", "Error", "No such object (or not one this user may see), or no such page.")
    if method in _BODY_METHODS and "requestBody" in operation:
        _add(responses, "409", "ValidationErrors", "The input collides with an existing object (e.g. a unique name).")
    if "requestBody" in operation:
        _add(responses, "413", "Error", "The request body is larger than API_MAX_BODY_BYTES.")
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if schema.get("type") == "string" and "format" not in schema and "enum" not in schema:
            schema.setdefault("pattern", NO_NUL)
        if parameter.get("in") == "query" and schema.get("type") == "integer":
            schema.setdefault("minimum", -BIGINT_MAX)  # beyond bigint the API answers 400, not 500
            schema.setdefault("maximum", BIGINT_MAX)
    _add(responses, "429", "Error", "Throttled: too many requests; retry after the given number of seconds.",
         headers={"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}})


def _add(responses: dict[str, Any], code: str, schema: str, description: str, **extra: Any) -> None:
    responses.setdefault(code, {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        **extra,
    })


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, telling clients what the fields really accept.

    - A string field that may not be blank says `minLength: 1` (DRF refuses "" there) and, when DRF trims it,
      a pattern asking for a character that is not whitespace (DRF refuses "\x1f" there too).
    - A list that may not be empty says `minItems: 1` (and its `maxItems`).
    - A decimal sent as a string needs digits (DRF refuses "", "." and "-"), and a sign only if negatives are
      allowed.
    """

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)
        if BLANK_ALTERNATIVE in schema.get("oneOf", []):
            # drf-spectacular's "or blank" alternative for a field that may be blank: "" may match the other
            # alternative too (no minLength), and under oneOf matching both would make the blank string invalid.
            schema["anyOf"] = schema.pop("oneOf")

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request":
            return schema
        if isinstance(field, serializers.CharField) and not field.read_only:
            regexes = [
                v.regex.pattern for v in field.validators if isinstance(v, RegexValidator) and not v.inverse_match
            ]
            if regexes:
                schema.setdefault("pattern", regexes[0])
            if not field.allow_blank:
                schema.setdefault("minLength", 1)
                if field.trim_whitespace:
                    schema.setdefault("pattern", NOT_BLANK)
            schema.setdefault("pattern", NO_NUL)  # DRF refuses NUL characters in any string
        if isinstance(field, serializers.IntegerField) and schema.get("type") == "integer":
            schema.setdefault("minimum", -BIGINT_MAX)  # ids are bigint: beyond it the model refuses the value
            schema.setdefault("maximum", BIGINT_MAX)
        if isinstance(field, (serializers.ListSerializer, serializers.ListField)) and schema.get("type") == "array":
            if not field.allow_empty:
                schema.setdefault("minItems", 1)
            if field.max_length is not None:
                schema.setdefault("maxItems", field.max_length)
        if isinstance(field, serializers.DecimalField) and "pattern" in schema and field.max_whole_digits:
            schema["pattern"] = decimal_pattern(field)
        return schema
