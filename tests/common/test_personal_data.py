"""Personal data stays out of telemetry: a consumer failure that names a customer (in a handler's error, or in the
input values pydantic quotes) keeps the name in the dead-letter row and out of log lines and spans."""

from __future__ import annotations

import io
import json
import logging
import traceback
import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from apps.common.kafka import kafka_topic
from apps.common.logs import JsonFormatter, RedactErrors
from apps.common.redaction import redact, redact_traceback, redact_url
from apps.consumers.models import DeadLetter
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import RouteCalculated
from tests.common.test_telemetry import spans  # noqa: F401 - fixture
from tests.consumers.support import RawProducer, cloud_event_headers, drain
from tests.invoicing.factories import three_stop_route

CUSTOMER = "Zeynep Kaya Gıda"
MISSPELT = "Ayşe Demir Lojistik"


@pytest.fixture
def log_text() -> Iterator[list[str]]:
    """Every log line of the test as the LOG_FORMAT=json formatter writes it, traceback included."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    root, handler = logging.getLogger(), Collect(logging.DEBUG)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


def span_texts(exporter: InMemorySpanExporter) -> list[str]:
    """Everything a span carries as text: name, attributes, status, events and their attributes."""
    texts = []
    for span in exporter.get_finished_spans():
        texts += [span.name, span.status.description or "", json.dumps(dict(span.attributes or {}), default=str)]
        texts += [f"{event.name} {json.dumps(dict(event.attributes or {}), default=str)}" for event in span.events]
    return texts


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_topics")
def test_a_dead_lettered_customer_name_stays_in_the_ledger_and_out_of_logs_and_spans(
    log_text: list[str], spans: InMemorySpanExporter,  # noqa: F811 - the fixture imported above
) -> None:
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))
    unbillable = producer.event(three_stop_route(route_id=940_001, customer_id=9401, customer_name=CUSTOMER))
    broken = three_stop_route(route_id=940_002, customer_id=9402)
    payload = {**json.loads(broken.model_dump_json()), "customer_id": MISSPELT}  # pydantic echoes the value
    broken_id = uuid.uuid4()
    producer.send(value=json.dumps(payload).encode(), key=broken.partition_key(),
                  headers=cloud_event_headers(broken, event_id=broken_id))
    producer.flush()
    worker = ConsumerWorker("invoicing", group_id=f"invoicing-pii-{uuid.uuid4().hex[:8]}")
    worker.setup()
    try:
        drain(worker, lambda: DeadLetter.objects.filter(event_id__in=[unbillable, broken_id]).count() == 2,
              timeout=60)
    finally:
        worker.teardown()

    # Operations still read the whole story in the ledger (the database, behind the admin's permissions).
    assert CUSTOMER in DeadLetter.objects.get(event_id=unbillable).error_message
    assert MISSPELT in DeadLetter.objects.get(event_id=broken_id).error_message
    # The telemetry names the failure and the ids, never the customer.
    dead_lettered = [json.loads(line) for line in log_text if "dead-lettered" in line]
    assert len(dead_lettered) == 2
    assert any(entry.get("route_id") == 940_001 and entry.get("customer_id") == 9401 for entry in dead_lettered)
    assert [line for line in log_text if CUSTOMER in line or MISSPELT in line] == []
    texts = span_texts(spans)
    assert any("MissingBillingData" in text for text in texts), "the span still says what failed"
    assert [text for text in texts if CUSTOMER in text or MISSPELT in text] == []


def test_redaction_drops_quoted_values_pydantic_inputs_and_personal_fields_but_keeps_ids() -> None:
    assert redact(f"customer 9401 {CUSTOMER!r} has no billing account; route 940001 can't be invoiced") == \
        "customer 9401 '<redacted>' has no billing account; route 940001 can't be invoiced"
    assert redact(f"customer_id\n  Input should be a valid integer [type=int_parsing, input_value={MISSPELT!r}, "
                  "input_type=str]") == \
        "customer_id\n  Input should be a valid integer [type=int_parsing, input_value=<redacted>, input_type=str]"
    assert redact("PlannedStop(sequence=1, name=Bursa, lat=40.19, lon=29.06) email: ayse@example.com") == \
        "PlannedStop(sequence=1, name=<redacted>, lat=<redacted>, lon=<redacted>) email: <redacted>"
    assert redact_url(f"/admin/routing/customer/?q={CUSTOMER}&p=2") == \
        "/admin/routing/customer/?q=<redacted>&p=<redacted>"


def test_a_redacted_traceback_keeps_its_frames_and_loses_the_message_values() -> None:
    try:
        raise ValueError(f"no billing account for customer 9401 {CUSTOMER!r}")
    except ValueError as error:
        text = redact_traceback("".join(traceback.format_exception(error)))

    assert CUSTOMER not in text
    assert 'raise ValueError(f"no billing account for customer 9401 {CUSTOMER!r}")' in text, "the code stays"
    assert text.endswith("ValueError: no billing account for customer 9401 '<redacted>'\n")


def test_log_lines_of_any_logger_lose_the_values_an_error_quotes(caplog: pytest.LogCaptureFixture) -> None:
    """The console handler's filter: an exception argument, a traceback, Celery's failed-task line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactErrors())
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("apps.test.personal_data")
    logger.addHandler(handler)
    try:
        error = ValueError(f"customer {CUSTOMER!r}")
        logger.warning("lookup failed: %s", error)
        try:
            raise error
        except ValueError:
            logger.exception("request failed")
        logger.error("Task %(name)s[%(id)s] %(description)s: %(exc)s",
                     {"name": "t", "id": "1", "description": "raised unexpected", "exc": repr(error)})
        json_line = JsonFormatter().format(caplog.records[1])
    finally:
        logger.removeHandler(handler)

    assert CUSTOMER not in stream.getvalue() and CUSTOMER not in json_line
    assert "lookup failed: customer '<redacted>'" in stream.getvalue()
    assert "raised unexpected: ValueError('<redacted>')" in stream.getvalue()
    assert "Traceback" in stream.getvalue() and "Traceback" in json.loads(json_line)["exception"]


@pytest.mark.django_db
def test_a_request_span_keeps_its_route_and_drops_its_query_values(
    spans: InMemorySpanExporter,  # noqa: F811 - the fixture imported above
) -> None:
    Client().get(f"/api/v1/routes/?customer_name={CUSTOMER}")

    [request] = [span for span in spans.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert request.attributes and request.attributes.get("http.route") == "api/v1/routes/"
    assert [text for text in span_texts(spans) if CUSTOMER in text or "Zeynep" in text] == []
