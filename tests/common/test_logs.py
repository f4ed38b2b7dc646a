"""LOG_FORMAT=json: one object per line, with the trace and the event being handled."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from confluent_kafka import KafkaError
from django.db import transaction

from apps import outbox
from apps.common.kafka import kafka_topic
from apps.common.logs import JsonFormatter
from apps.common.tracing import trace_context
from apps.consumers.models import DeadLetter, InboxEntry
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import RouteCalculated
from apps.invoicing.models import Invoice
from apps.outbox.relay import Batch, OutboxRelay
from tests.common.test_telemetry import run_queued_tasks
from tests.consumers.support import RawProducer, drain
from tests.factories import route_calculated
from tests.invoicing.conftest import celery_queue, media_root  # noqa: F401 - fixtures
from tests.invoicing.factories import BillingAccountFactory, three_stop_route

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _record(message: str, *, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("apps.test", logging.WARNING, __file__, 1, message, None, exc_info)  # type: ignore[arg-type]


def test_a_line_inside_a_handler_carries_the_trace_and_the_event_id() -> None:
    with trace_context(PARENT, event_id="4b1c9c1e-0000-4000-8000-000000000001") as traceparent:
        line = JsonFormatter().format(_record('route "7" \u00e9'))

    entry = json.loads(line)
    assert entry["message"] == 'route "7" \u00e9'
    assert (entry["level"], entry["logger"]) == ("WARNING", "apps.test")
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == traceparent.split("-")[2]
    assert entry["event_id"] == "4b1c9c1e-0000-4000-8000-000000000001"
    assert entry["time"].endswith("Z")


def test_a_line_outside_any_trace_has_no_trace_fields_and_keeps_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(_record("failed", exc_info=sys.exc_info()))

    entry = json.loads(line)
    assert "trace_id" not in entry and "event_id" not in entry
    assert "ValueError: boom" in entry["exception"]


# --- the lines of the relay, the consumers and the Celery tasks ------------------------------------------------

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"  # the traceparent tests.consumers.support sends with every event


@pytest.fixture
def json_lines() -> Iterator[list[dict[str, Any]]]:
    """Every log record of the test, as the LOG_FORMAT=json formatter writes it."""
    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    root, handler = logging.getLogger(), Collect(logging.INFO)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


def line(lines: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The last line containing `text` (a failed batch is applied again message by message: lines repeat)."""
    return [entry for entry in lines if text in entry["message"]][-1]


@pytest.mark.django_db(transaction=True)
def test_a_relay_line_about_a_row_carries_its_trace_and_event_id(
    kafka_bootstrap: str, json_lines: list[dict[str, Any]],
) -> None:
    with transaction.atomic(), trace_context(PARENT):
        event_id = outbox.publish(route_calculated(truck_id=7))
    with mock.patch.object(Batch, "report", _refused_for_good):
        relay = OutboxRelay()
        relay.setup()
        try:
            relay.run_once()
        finally:
            relay.teardown()

    entry = line(json_lines, "refused for good")
    assert (entry["trace_id"], entry["event_id"]) == (PARENT.split("-")[1], str(event_id))


def _refused_for_good(self: Batch, slot: int, _error: KafkaError | None, _message: object) -> None:
    self.reports[slot] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    self._settle()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_topics", "media_root")
def test_consumer_and_celery_lines_carry_the_trace_the_event_id_and_the_route_or_invoice(
    json_lines: list[dict[str, Any]], celery_queue: Path,  # noqa: F811 - the fixture imported above
) -> None:
    BillingAccountFactory(customer_id=9301)
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))
    route = three_stop_route(route_id=930_001, customer_id=9301, truck_id=93)
    producer.event(route)
    again = producer.event(route)  # the same calculation under a new event id: "already invoiced"
    unbillable = producer.event(three_stop_route(route_id=930_002, customer_id=9302, truck_id=94))
    producer.flush()
    worker = ConsumerWorker("invoicing", group_id=f"invoicing-logs-{uuid.uuid4().hex[:8]}")
    worker.setup()
    try:
        drain(worker, lambda: DeadLetter.objects.filter(event_id=unbillable).exists()
              and InboxEntry.objects.filter(event_id=again).exists(), timeout=60)
    finally:
        worker.teardown()
    invoice_id = Invoice.objects.get(route_id=930_001).pk
    Invoice.objects.filter(pk=invoice_id).delete()  # its render task then logs that it has nothing to render
    run_queued_tasks(celery_queue)

    ignored = line(json_lines, "already invoiced")
    assert (ignored["trace_id"], ignored["event_id"], ignored["route_id"]) == (TRACE_ID, str(again), 930_001)
    dead = line(json_lines, "dead-lettered")
    assert (dead["trace_id"], dead["event_id"], dead["route_id"]) == (TRACE_ID, str(unbillable), 930_002)
    gone = line(json_lines, "no longer exists")
    assert (gone["trace_id"], gone["invoice_id"]) == (TRACE_ID, invoice_id)
    assert line(json_lines, "render_invoice_pdf")["trace_id"] == TRACE_ID  # Celery's own line for the task
