"""Optional OpenTelemetry: one trace per story, from the request that creates a route to its invoice's PDF."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import signals
from celery.app.trace import build_tracer
from django.conf import settings
from django.db import connection
from django.test import Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from rest_framework.test import APIClient

from apps.common import tracing
from apps.common.telemetry import configure_telemetry, shutdown_telemetry, telemetry_enabled
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import InvoiceGenerated, RouteCalculated
from apps.invoicing.models import Invoice
from apps.outbox.models import OutboxEvent
from apps.routing.models import Route
from logiflow.celery import app as celery_app
from tests.consumers.support import drain
from tests.invoicing.conftest import celery_queue, media_root, queued_messages  # noqa: F401 - fixtures
from tests.invoicing.factories import BillingAccountFactory, UserFactory
from tests.outbox.support import drain_in_process
from tests.routing.conftest import DISPATCHER_PERMISSIONS
from tests.routing.factories import CustomerFactory, TruckFactory

STOPS = [
    {"name": "Ankara", "lat": 39.9334, "lon": 32.8597},
    {"name": "Bursa", "lat": 40.1885, "lon": 29.0610},
]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, its spans kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    assert configure_telemetry("logiflow-test", exporter=exporter)
    connection.close()  # the next query reconnects through the psycopg instrumentation
    yield exporter
    shutdown_telemetry()


def run_queued_tasks(folder: Path) -> list[str]:
    """Run the queued Celery messages in this process as a worker would (message headers become the task's
    request), including the messages they queue; returns the task names in the order they ran."""
    ran: list[str] = []
    while messages := queued_messages(folder):
        for path in messages:
            message = json.loads(path.read_text())
            path.unlink()
            headers = message["headers"]
            args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            task = celery_app.tasks[headers["task"]]
            build_tracer(task.name, task, app=celery_app)(headers["id"], args, kwargs, {**headers, "delivery_info": {}})
            ran.append(task.name)
    return ran


def consume(group: str, until: object) -> None:
    worker = ConsumerWorker(group, group_id=f"{group}-trace-{uuid.uuid4().hex[:8]}")
    worker.setup()
    try:
        drain(worker, until, timeout=60)  # type: ignore[arg-type]
    finally:
        worker.teardown()


def of_event(finished: list[ReadableSpan], event_id: object, kind: SpanKind) -> ReadableSpan:
    [span] = [s for s in finished if s.kind == kind and s.attributes.get("messaging.message.id") == str(event_id)]
    return span


def by_id(finished: list[ReadableSpan], traceparent: str) -> ReadableSpan:
    [span] = [s for s in finished if format(s.context.span_id, "016x") == traceparent.split("-")[2]]
    return span


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_topics", "media_root")
def test_a_route_its_relay_its_invoice_the_invoice_generated_round_trip_and_the_pdf_are_one_trace(
    spans: InMemorySpanExporter, celery_queue: Path,  # noqa: F811 - the fixture imported above
) -> None:
    dispatcher = APIClient()
    dispatcher.force_authenticate(UserFactory(role="dispatcher", role__permissions=DISPATCHER_PERMISSIONS))
    customer = CustomerFactory()
    BillingAccountFactory(customer_id=customer.pk, name=customer.name)
    response = dispatcher.post("/api/v1/routes/", {"truck": TruckFactory().pk, "customer": customer.pk,
                                                   "stops": STOPS}, format="json")
    assert response.status_code == 201, response.json()
    route_id = response.json()["id"]

    drain_in_process()
    consume("invoicing", lambda: Invoice.objects.filter(route_id=route_id).exists())
    assert run_queued_tasks(celery_queue) == [
        "apps.invoicing.tasks.queue_invoice_renders", "apps.invoicing.tasks.render_invoice_pdf",
    ]
    drain_in_process()
    consume("routing", lambda: Route.objects.get(pk=route_id).invoiced)

    finished = list(spans.get_finished_spans())
    calculated = OutboxEvent.objects.get(event_type=RouteCalculated.ce_type(), key=f"truck:{response.json()['truck']}")
    generated = OutboxEvent.objects.get(event_type=InvoiceGenerated.ce_type(), key=f"route:{route_id}")
    [request] = [s for s in finished if s.kind == SpanKind.SERVER and s.attributes.get("http.route") == "api/v1/routes/"]
    story = {
        "request": request,
        "relay sends RouteCalculated": of_event(finished, calculated.event_id, SpanKind.PRODUCER),
        "invoicing processes it": of_event(finished, calculated.event_id, SpanKind.CONSUMER),
        "invoicing issues the invoice": by_id(finished, generated.traceparent),
        "relay sends InvoiceGenerated": of_event(finished, generated.event_id, SpanKind.PRODUCER),
        "routing processes it": of_event(finished, generated.event_id, SpanKind.CONSUMER),
        "the PDF task": next(s for s in finished if s.name == "run/apps.invoicing.tasks.render_invoice_pdf"),
    }
    trace_ids = {name: format(span.context.trace_id, "032x") for name, span in story.items()}
    assert set(trace_ids.values()) == {trace_ids["request"]}, trace_ids
    # Each hop is a child of the one before it, through the traceparent the outbox row and the message carry.
    assert calculated.traceparent.split("-")[2] == format(story["request"].context.span_id, "016x")
    assert story["invoicing processes it"].parent.span_id == story["relay sends RouteCalculated"].context.span_id
    assert story["invoicing issues the invoice"].parent.span_id == story["invoicing processes it"].context.span_id
    assert story["routing processes it"].parent.span_id == story["relay sends InvoiceGenerated"].context.span_id
    queries = [s for s in finished if s.kind == SpanKind.CLIENT and s.parent and s.parent.span_id == request.context.span_id]
    assert any(s.attributes.get("db.system") == "postgresql" for s in queries), "psycopg spans under the request"
    assert response["traceparent"].split("-")[1] == trace_ids["request"]


@pytest.mark.django_db
def test_probes_and_scrapes_are_not_traced(spans: InMemorySpanExporter) -> None:
    client = Client()
    for url in ("/healthz", "/readyz", "/metrics"):
        client.get(url)
    assert client.get("/api/v1/routes/").status_code in (401, 403)  # a request that is traced, for contrast

    assert [span.attributes.get("http.route") for span in spans.get_finished_spans()
            if span.kind == SpanKind.SERVER] == ["api/v1/routes/"]


def test_without_the_endpoint_nothing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert configure_telemetry("logiflow-test") is False
    assert not telemetry_enabled() and not tracing.otel_enabled()
    assert not any("opentelemetry" in middleware for middleware in settings.MIDDLEWARE)
    with tracing.trace_context(None) as traceparent:
        assert tracing.current_traceparent() == traceparent  # the contextvar span, as before


@pytest.mark.parametrize(("pool", "traced_here"), [
    ("prefork", False), ("celery.concurrency.prefork:TaskPool", False), ("solo", True), ("threads", True),
])
def test_a_celery_worker_is_traced_in_the_process_that_runs_its_tasks(
    pool: str, traced_here: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefork: in each child (worker_process_init), never in the parent, whose exporter thread would not
    survive the fork; solo and threads: in the worker itself."""
    configured: list[str] = []
    monkeypatch.setattr("apps.common.telemetry.configure_telemetry", configured.append)
    signals.worker_init.send(sender=type("WorkController", (), {"pool_cls": pool})())
    assert configured == (["logiflow-celery"] if traced_here else [])
    signals.worker_process_init.send(sender=None)
    assert configured[-1:] == ["logiflow-celery"]
