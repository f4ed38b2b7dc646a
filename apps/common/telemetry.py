"""Optional OpenTelemetry tracing, switched on per process by `OTEL_EXPORTER_OTLP_ENDPOINT`: Django, psycopg and
Celery are instrumented, and `apps.common.tracing` turns its spans (request, relay send, consumer process) into
real ones. Without the variable nothing is patched and no exporter runs. Spans leave the process redacted
(`RedactingExporter`): no error message's quoted values, no query values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status, get_current_span
from opentelemetry.util.types import Attributes, AttributeValue

from apps.common import tracing
from apps.common.redaction import redact, redact_traceback, redact_url

logger = logging.getLogger(__name__)
# Probes and scrapes arrive every few seconds and tell no story: not traced (OTEL_PYTHON_DJANGO_EXCLUDED_URLS,
# comma-separated regular expressions searched in the URL, replaces this list).
PROBE_URLS = "/healthz,/readyz,/metrics"


class DropOrphanQueries(Sampler):
    """A database query outside any traced unit of work (the relay's polls, heartbeats, beat sweeps) would be a
    trace of one span every few seconds: drop client spans that have no parent, sample everything else."""

    def should_sample(
        self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
        attributes: Attributes = None, links: Sequence[Link] | None = None, trace_state: object = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT and not get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "DropOrphanQueries"


class RedactingExporter(SpanExporter):
    """Hands spans on without the personal data an error or a URL may carry (apps.common.redaction): status
    descriptions and exception messages redacted, tracebacks keep their frames, URLs lose their query values.
    Every span passes here, ours and the instrumentations' (a Django 500, a failed Celery task)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([_redacted(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


_REDACT: dict[str, Callable[[str], str]] = {
    "exception.message": redact, "exception.stacktrace": redact_traceback,
    "http.url": redact_url, "http.target": redact_url, "url.full": redact_url,
    "url.query": lambda query: redact_url(f"?{query}")[1:],
}


def _redacted(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=_redacted_attributes(span.attributes), kind=span.kind, links=span.links, status=status,
        events=[Event(event.name, _redacted_attributes(event.attributes), event.timestamp) for event in span.events],
        start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


def _redacted_attributes(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    redacted = dict(attributes or {})
    for name, value in redacted.items():
        if name in _REDACT and isinstance(value, str):
            redacted[name] = _REDACT[name](value)
    return redacted


@dataclass
class _Telemetry:
    provider: TracerProvider
    instrumentors: list[object]


_active: _Telemetry | None = None


def configure_telemetry(service_name: str, *, exporter: SpanExporter | None = None) -> bool:
    """Trace this process as `service_name` if `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or a test passes an
    exporter, whose spans are exported synchronously). Once per process; True when tracing is on."""
    if _active is not None:
        return True
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=ParentBased(root=DropOrphanQueries())
    )
    provider.add_span_processor(
        SimpleSpanProcessor(RedactingExporter(exporter)) if exporter
        else BatchSpanProcessor(RedactingExporter(_otlp_exporter()))
    )
    _activate(provider)
    logger.info("OpenTelemetry tracing on as %s", service_name)
    return True


def _otlp_exporter() -> SpanExporter:
    # Reads OTEL_EXPORTER_OTLP_ENDPOINT (and _HEADERS, _TIMEOUT ...) itself; imported only when tracing is on.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _activate(provider: TracerProvider) -> None:
    global _active
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    django, psycopg, celery = DjangoInstrumentor(), PsycopgInstrumentor(), CeleryInstrumentor()
    django.instrument(
        tracer_provider=provider, excluded_urls=os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", PROBE_URLS),
    )
    psycopg.instrument(tracer_provider=provider)
    celery.instrument(tracer_provider=provider)
    tracing.use_tracer(provider.get_tracer("logiflow"))
    _active = _Telemetry(provider=provider, instrumentors=[django, psycopg, celery])


def shutdown_telemetry() -> None:
    """Flush and switch tracing off again (tests; a process simply exits)."""
    global _active
    if _active is None:
        return
    tracing.use_tracer(None)
    for instrumentor in _active.instrumentors:
        instrumentor.uninstrument()  # type: ignore[attr-defined] # OpenTelemetry's instrumentors are untyped
    _active.provider.shutdown()
    _active = None


def telemetry_enabled() -> bool:
    return _active is not None
