"""Schemathesis over the whole OpenAPI schema, in-process, authenticated as a superuser.

Every operation gets generated requests (valid and invalid); none may answer 5xx, every status code and content
type must be documented and every response match its schema, schema-invalid input must be refused and
schema-valid input accepted. One exception to the last: a body naming an object that does not exist (`"truck":
0`) is schema-valid yet answers 400 naming the field, on purpose (the schema cannot know which ids exist). `SCHEMATHESIS_MAX_EXAMPLES` sets the examples per operation (default 25). The totals are
printed in the test summary (`api fuzz: …`).

A second test sends every integer query and path parameter oversized numbers (`OVERSIZED_NUMBERS`: huge exponents,
digits past bigint, zero padding), which the schema's generator rarely reaches: each must be refused (400 or 404).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
# operation -> requests sent; read by the terminal summary hook in tests/conftest.py
SENT: Counter[str] = Counter()

RAW_SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
schema.app = get_wsgi_application()


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    """As Django's test client does: a request's end must not close the test's connection (and transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_token(db: None, in_process_requests: None) -> str:
    """A superuser's token (every operation is reachable) and one row of each kind for the ids to hit."""
    if not User.objects.filter(username="fuzz").exists():
        _seed()
    user = User.objects.get(username="fuzz")
    return AuthToken.objects.create(user=user)[1]


def _seed() -> None:
    from tests.consumers.factories import dead_letter
    from tests.invoicing.factories import issued_invoice
    from tests.routing.factories import calculated_route

    User.objects.create_superuser("fuzz", "fuzz@example.com", "pw")
    calculated_route()
    issued_invoice()
    dead_letter(1)


@schema.parametrize()
# database=None: no .hypothesis/ folder in the source tree.
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@pytest.mark.django_db
def test_no_operation_answers_5xx_or_off_schema(case: schemathesis.Case, api_token: str) -> None:
    cache.clear()  # throttle counters: the fuzzer is one user sending thousands of requests
    response = case.call(headers={"Authorization": f"Token {api_token}"})
    SENT[case.operation.label] += 1
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
              negative_data_rejection]
    if not _only_missing_references(response):
        checks.append(positive_data_acceptance)
    case.validate_response(response, checks=checks)


def _only_missing_references(response: object) -> bool:
    """400 whose every error is DRF's "Invalid pk … - object does not exist." for a related id."""
    if response.status_code != 400:  # type: ignore[attr-defined]
        return False
    try:
        body = response.json()  # type: ignore[attr-defined]
    except ValueError:
        return False
    messages = [m for value in body.values() for m in (value if isinstance(value, list) else [value])]
    return bool(messages) and all(isinstance(m, str) and m.endswith("object does not exist.") for m in messages)


# Numbers no id can be, written the ways that cost a careless parser most: `int(Decimal("1e3000000"))` takes minutes.
OVERSIZED_NUMBERS = st.one_of(
    st.integers(min_value=19, max_value=10**7).map(lambda exponent: f"1e{exponent}"),
    st.integers(min_value=19, max_value=10**9).map(lambda exponent: f"-9.9E+{exponent}"),
    st.integers(min_value=2**63, max_value=10**80).map(str),
    st.integers(min_value=2**63, max_value=10**40).map(lambda number: f"-{number}"),
    st.integers(min_value=33, max_value=4000).map(lambda zeros: "0" * zeros + "7"),
)


def _integer_parameters() -> list[tuple[str, str, str]]:
    """(method, path template, parameter) of every integer query or path parameter in the schema."""
    found = []
    for path, operations in RAW_SCHEMA["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] in ("query", "path") and parameter.get("schema", {}).get("type") == "integer":
                    found.append((method, path, parameter["name"] if parameter["in"] == "query" else "{path}"))
    return found


INTEGER_PARAMETERS = _integer_parameters()


@pytest.mark.timeout(120)  # each request must be refused at once; a conversion of one of these takes minutes
@given(target=st.sampled_from(INTEGER_PARAMETERS), number=OVERSIZED_NUMBERS)
@settings(max_examples=MAX_EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@pytest.mark.django_db
def test_oversized_numbers_in_integer_parameters_are_refused(
    target: tuple[str, str, str], number: str, api_token: str,
) -> None:
    cache.clear()
    method, template, parameter = target
    path, query = template, {}
    for name in [part[1:-1] for part in template.split("/") if part.startswith("{")]:
        path = path.replace(f"{{{name}}}", number if parameter == "{path}" else "1")
    if parameter != "{path}":
        query[parameter] = number
    response = Client().generic(method.upper(), path + ("?" + "&".join(f"{k}={v}" for k, v in query.items())
                                                        if query else ""),
                                HTTP_AUTHORIZATION=f"Token {api_token}")
    SENT["oversized numbers"] += 1
    assert response.status_code in (400, 404), (method, path, query, response.status_code)
