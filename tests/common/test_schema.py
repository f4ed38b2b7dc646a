"""The OpenAPI schema says what the API accepts: whatever it calls valid, the API accepts."""

from __future__ import annotations

import re

from drf_spectacular.generators import SchemaGenerator


def test_a_trimmed_non_blank_field_documents_that_whitespace_alone_is_blank() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    plate = schema["components"]["schemas"]["TruckInputRequest"]["properties"]["plate"]
    pattern = re.compile(plate["pattern"])
    assert not any(pattern.fullmatch(value) for value in ("\x1f", " ", "\t\x85", "\u3000"))
    assert pattern.fullmatch("34 LF 007")


def test_a_field_that_may_be_blank_accepts_the_blank_string_under_the_schema() -> None:
    # Fuzzing found POST depots/ with address="" accepted (rightly) while the schema's oneOf called it invalid.
    schema = SchemaGenerator().get_schema(request=None, public=True)
    address = schema["components"]["schemas"]["DepotInputRequest"]["properties"]["address"]
    assert "oneOf" not in address
    assert {"type": "string", "maxLength": 0} in address["anyOf"]
