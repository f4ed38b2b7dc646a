"""Prometheus metrics of the event flow: the counters, histograms and gauges the processes update, a worker's
own metrics port, and the web's request metrics.

Each process keeps its own counters (prometheus-client's default registry) and serves them itself: a relay or a
consumer on RELAY_METRICS_PORT / CONSUMER_METRICS_PORT, Celery on CELERY_METRICS_PORT (its prefork children
share them through PROMETHEUS_MULTIPROC_DIR). Gauges that describe the database (backlog, ledger, heartbeats)
are computed only by the web's /metrics (apps/ops/metrics.py), so N workers do not export N copies of the same
number.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

RELAY_ROWS_PUBLISHED = Counter(
    "logiflow_relay_rows_published_total", "Outbox rows the broker confirmed, by topic.", ["topic"]
)
RELAY_ROWS_FAILED = Counter(
    "logiflow_relay_rows_failed_total", "Outbox rows the broker refused for good (state failed), by topic.", ["topic"]
)
RELAY_ROWS_RETRIED = Counter(
    "logiflow_relay_rows_retried_total", "Outbox rows left pending to be sent again (no or a transient report).",
    ["topic"],
)
RELAY_BATCH_SECONDS = Histogram(
    "logiflow_relay_batch_duration_seconds", "One relay batch: claim, send, wait for reports, record, commit.",
    buckets=_LATENCY_BUCKETS,
)
RELAY_DELIVERY_LATENCY = Histogram(
    "logiflow_relay_delivery_latency_seconds", "From an outbox row's creation to the broker's confirmation.",
    ["topic"], buckets=_LATENCY_BUCKETS,
)
CONSUMER_MESSAGES = Counter(
    "logiflow_consumer_messages_total",
    "Messages a consumer group dealt with, by outcome (handled, duplicate, skipped, dead_lettered, parked, "
    "in_ledger).",
    ["group", "outcome"],
)
CONSUMER_HANDLER_SECONDS = Histogram(
    "logiflow_consumer_handler_duration_seconds", "Applying one message (or one batch-handler run) in its savepoint.",
    ["group"], buckets=_LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "logiflow_consumer_lag", "Messages behind: high watermark minus committed offset, per assigned partition.",
    ["group", "topic", "partition"],
)
CONSUMER_REJOINS = Counter(
    "logiflow_consumer_rejoins_total",
    "Times a consumer left its group to join again because partitions had lag and no live owner.", ["group"],
)
CONSUMER_END_TO_END = Histogram(
    "logiflow_consumer_end_to_end_latency_seconds",
    "From the event's creation (ce_time) to its commit by the consumer group.", ["group"], buckets=_LATENCY_BUCKETS,
)
WORKER_LAST_BATCH = Gauge(
    "logiflow_worker_last_batch_timestamp_seconds", "Unix time of this worker's last completed iteration.",
    ["kind", "group"],
)
INVOICES_ISSUED = Counter("logiflow_invoices_issued_total", "Invoices and credit notes issued (committed).", ["kind"])
PDF_RENDERS = Counter("logiflow_pdf_renders_total", "Invoice PDF render attempts, by outcome.", ["outcome"])
HTTP_REQUESTS = Counter(
    "logiflow_http_requests_total", "HTTP requests answered by the web, by method, URL route and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "logiflow_http_request_duration_seconds", "Time the web took to answer a request, by method and URL route.",
    ["method", "route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PDF_RENDER_SECONDS = Histogram(
    "logiflow_pdf_render_duration_seconds", "Rendering one invoice PDF with WeasyPrint.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


def serve_worker_metrics(port: int, *, name: str) -> bool:
    """Expose this process's metrics on `port` (0: off); False when the port could not be bound."""
    if not port:
        return False
    try:
        start_http_server(port, addr=settings.WORKER_METRICS_ADDR, registry=process_registry())
    except OSError as error:
        # Metrics are not worth a dead worker: log and keep relaying.
        logger.error("%s: cannot serve metrics on port %s: %s", name, port, error)
        return False
    logger.info("%s: metrics on http://%s:%s/metrics", name, settings.WORKER_METRICS_ADDR, port)
    return True


def process_registry() -> CollectorRegistry:
    """This process's own metrics: prefork children's too when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    """Counts and times every request by method, URL pattern (not path: ids would explode the label set) and
    status. Outermost, so a lockout or a CSRF refusal is counted too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "other"
        route = _route_label(request)
        HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_CONVERTER = re.compile(r"<\w+:(\w+)>")


def _route_label(request: HttpRequest) -> str:
    """`/api/v1/trucks/<pk>/` for DRF's regex routes as for path() ones; `<unmatched>` for a 404 or a request a
    middleware answered before URL resolution."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return "<unmatched>"
    route = _CONVERTER.sub(r"<\1>", _REGEX_GROUP.sub(r"<\1>", match.route))
    return "/" + route.replace("^", "").replace("$", "")

