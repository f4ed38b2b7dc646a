"""W3C trace context (`traceparent`) carried from an HTTP request or a consumed event into the events it causes.

Without OpenTelemetry (the default) a span is only an id in a contextvar. When `apps.common.telemetry` has
installed a tracer, `trace_context` starts a real OpenTelemetry span under the given traceparent and
`current_traceparent` is the active span's, so outbox rows, Kafka headers and Celery headers carry real spans.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import MappingProxyType
from typing import Any

from django.http import HttpRequest, HttpResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from apps.common.redaction import redact_error

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
# The id of the event being handled, for the logs (apps.common.logs); None outside a handler.
_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
# Business ids of the work in progress (route_id, invoice_id ...), for the logs.
_log_ids: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "log_ids", default=MappingProxyType({})
)
_propagator = TraceContextTextMapPropagator()
_tracer: Tracer | None = None  # set by apps.common.telemetry when OpenTelemetry is on


def use_tracer(tracer: Tracer | None) -> None:
    """Switch OpenTelemetry spans on (a tracer) or off (None); only apps.common.telemetry calls this."""
    global _tracer
    _tracer = tracer


def otel_enabled() -> bool:
    return _tracer is not None


def new_traceparent(parent: str | None = None) -> str:
    """A child span of `parent` when it is a valid traceparent, else the root of a new trace."""
    match = _TRACEPARENT.match(parent or "")
    trace_id, flags = (match.group(1), match.group(3)) if match else (secrets.token_hex(16), "01")
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def current_traceparent() -> str | None:
    if _tracer is not None:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        if "traceparent" in carrier:
            return carrier["traceparent"]
    return _current.get()


def current_event_id() -> str | None:
    return _event_id.get()


def current_log_ids() -> Mapping[str, object]:
    return _log_ids.get()


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Name the business objects of the work in progress (`route_id=`, `invoice_id=`) in every log line."""
    known = {name: value for name, value in ids.items() if value is not None}
    token = _log_ids.set({**_log_ids.get(), **known})
    try:
        yield
    finally:
        _log_ids.reset(token)


@contextmanager
def trace_context(
    parent: str | None, *, event_id: str | None = None, name: str = "logiflow", kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Run a unit of work as a new span under `parent` (or, with OpenTelemetry, the active span; else a new
    trace); `event_id` names the event it handles. `name`, `kind` and `attributes` describe the OTel span."""
    span = _id_span(parent) if _tracer is None else _otel_span(parent, name, kind, attributes)
    with _handling(event_id), span as traceparent:
        yield traceparent


@contextmanager
def _handling(event_id: str | None) -> Iterator[None]:
    """`event_id` names the event being handled in the logs, until the block ends (None: leave it as it is)."""
    token = _event_id.set(event_id) if event_id is not None else None
    try:
        yield
    finally:
        if token is not None:
            _event_id.reset(token)


@contextmanager
def _id_span(parent: str | None) -> Iterator[str]:
    traceparent = new_traceparent(parent)
    token = _current.set(traceparent)
    try:
        yield traceparent
    finally:
        _current.reset(token)


@contextmanager
def _otel_span(
    parent: str | None, name: str, kind: SpanKind, attributes: Mapping[str, Any] | None,
) -> Iterator[str]:
    # An invalid parent extracts to an empty context: a new trace, as without OpenTelemetry.
    parent_context = _propagator.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(  # type: ignore[union-attr] # only called while a tracer is set
        name, context=parent_context, kind=kind, attributes=attributes,
    ):
        yield current_traceparent()  # type: ignore[misc] # inside a started span it is never None


@contextmanager
def resumed(traceparent: str | None, *, event_id: str | None = None) -> Iterator[None]:
    """Continue `traceparent` without a span of its own: work queued on commit, after its span has ended, is
    sent as part of the trace that queued it; a log line about a row or an event names its trace (and event)."""
    with _handling(event_id), _resumed(traceparent):
        yield


@contextmanager
def _resumed(traceparent: str | None) -> Iterator[None]:
    if not traceparent or not _TRACEPARENT.match(traceparent):  # foreign text is never a trace to continue
        yield
        return
    if _tracer is None:
        token = _current.set(traceparent)
        try:
            yield
        finally:
            _current.reset(token)
        return
    otel_token = otel_context.attach(_propagator.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(otel_token)


def send_span(traceparent: str | None, *, topic: str, key: str | None, event_id: str) -> AbstractContextManager[str]:
    """A Kafka producer span under `traceparent` (OpenTelemetry messaging conventions); yields its traceparent."""
    attributes = {
        "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.operation.name": "send",
        "messaging.destination.name": topic, "messaging.message.id": event_id,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key
    return trace_context(traceparent or None, name=f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes)


@contextmanager
def batch_spans(
    messages: Sequence[tuple[str | None, str, Mapping[str, Any]]],
) -> Iterator[list[str] | None]:
    """Spans for messages handled together by one call: one per (parent traceparent, name, attributes), each a
    consumer span under its own message's trace that covers the whole call. Yields their traceparents, for the
    work done per message; None without OpenTelemetry (the messages' own traceparents stay the parents)."""
    if _tracer is None:
        yield None
        return
    spans = [
        _tracer.start_span(name, context=_propagator.extract({"traceparent": parent}) if parent else None,
                           kind=SpanKind.CONSUMER, attributes=attributes)
        for parent, name, attributes in messages
    ]
    try:
        yield [_traceparent_of(span) for span in spans]
    except BaseException as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, redact_error(error)))
        raise
    finally:
        for span in spans:
            span.end()


def _traceparent_of(span: trace.Span) -> str:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier["traceparent"]


_task_traces: dict[str, AbstractContextManager[str]] = {}


def task_publish_headers(headers: dict[str, Any] | None) -> None:
    """Carry the current trace in a Celery message's headers (with OpenTelemetry, its Celery instrumentation
    then replaces it with its publish span)."""
    traceparent = current_traceparent()
    if headers is not None and traceparent and "traceparent" not in headers:
        headers["traceparent"] = traceparent


def task_trace_enter(task_id: str, traceparent: str | None) -> None:
    """Run a Celery task as a span of the trace that queued it. With OpenTelemetry the Celery instrumentation
    already does (its run span is current), so this only serves the contextvar spans of the logs."""
    if _tracer is not None or not traceparent:
        return
    span = trace_context(traceparent, name="celery task")
    span.__enter__()
    _task_traces[task_id] = span


def task_trace_exit(task_id: str) -> None:
    span = _task_traces.pop(task_id, None)
    if span is not None:
        span.__exit__(None, None, None)


def span_active() -> bool:
    """True when an OpenTelemetry span (ours or an instrumentation's) is current."""
    return _tracer is not None and trace.get_current_span().get_span_context().is_valid


class TraceparentMiddleware:
    """Every request runs inside a span, so the events it publishes carry a `traceparent`. With OpenTelemetry
    the Django instrumentation's server span is that span."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _tracer is not None:  # the instrumentation traces the request, or excluded it on purpose (probes)
            response = self.get_response(request)
            if span_active():
                response["traceparent"] = current_traceparent()
            return response
        with trace_context(request.headers.get("traceparent"), name=request.method or "HTTP",
                           kind=SpanKind.SERVER) as traceparent:
            response = self.get_response(request)
            response["traceparent"] = traceparent
            return response
