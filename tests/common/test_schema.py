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
