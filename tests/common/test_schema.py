"""The OpenAPI schema says what the API accepts (apps/common/schema.py), on inputs the fuzz test found."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def components() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]


@pytest.mark.parametrize(("component", "field"), [("CustomerInputRequest", "name"), ("TokenLoginInputRequest", "username")])
def test_a_field_that_may_not_be_blank_documents_that_whitespace_alone_is_blank(
    components: dict, component: str, field: str
) -> None:
    # DRF strips surrounding whitespace before its blank check, so " " is refused like "".
    pattern = components[component]["properties"][field]["pattern"]
    assert re.fullmatch(pattern, " \t") is None
    assert re.fullmatch(pattern, " Ana ") is not None
    assert re.fullmatch(pattern, "Ana\x00") is None
