"""Prometheus metrics of the event flow: counters and histograms the processes update, gauges read from the
database when scraped, and the endpoints that expose them (a worker's own port, the web's guarded /metrics).

Each process keeps its own counters (prometheus-client's default registry) and serves them itself: a relay or a
consumer on RELAY_METRICS_PORT / CONSUMER_METRICS_PORT, Celery on CELERY_METRICS_PORT (its prefork children
share them through PROMETHEUS_MULTIPROC_DIR). Gauges that describe the database (backlog, ledger, heartbeats)
are computed only by the web's /metrics, so N workers do not export N copies of the same number.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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


class FlowCollector(Collector):
    """Gauges read from the database at scrape time: the outbox backlog, the ledger, the heartbeats."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from apps.common.selectors import heartbeats_with_age
        from apps.consumers.selectors import ledger_counts
        from apps.outbox.selectors import outbox_backlog

        backlog = outbox_backlog()
        yield GaugeMetricFamily("logiflow_outbox_pending", "Outbox rows waiting for the relay.", value=backlog.unpublished)
        age = backlog.oldest_age.total_seconds() if backlog.oldest_age is not None else 0.0
        yield GaugeMetricFamily(
            "logiflow_outbox_oldest_pending_age_seconds", "Age of the oldest outbox row waiting (0 when none).",
            value=age,
        )
        ledger = GaugeMetricFamily(
            "logiflow_deadletters", "Dead-letter ledger rows by group and status.", labels=["group", "status"]
        )
        for (group, status), count in sorted(ledger_counts().items()):
            ledger.add_metric([group, status], count)
        yield ledger
        failures = GaugeMetricFamily(
            "logiflow_deadletters_unresolved_by_failure_group",
            "Unresolved dead letters per consumer group and failure group (fingerprint).",
            labels=["group", "fingerprint"],
        )
        for (group, fingerprint), count in sorted(ledger_counts(by_fingerprint=True).items()):
            failures.add_metric([group, fingerprint], count)
        yield failures
        beats = GaugeMetricFamily(
            "logiflow_heartbeat_age_seconds", "Seconds since each worker process's last heartbeat.",
            labels=["kind", "group", "host", "pid"],
        )
        for beat, seconds in heartbeats_with_age():
            beats.add_metric([beat.kind, beat.group, beat.host, str(beat.pid)], seconds)
        yield beats
        yield from celery_queue_gauges()


def celery_queue_gauges(*, timeout: float = 2.0) -> Iterator[GaugeMetricFamily]:
    """`logiflow_celery_queue_messages` per queue the workers consume, and `logiflow_celery_broker_up`: a
    Celery broker that does not answer within `timeout` reports 0 up and no depth, never a failed scrape."""
    from kombu.exceptions import ChannelError

    from logiflow.celery import app

    depth = GaugeMetricFamily(
        "logiflow_celery_queue_messages", "Celery tasks waiting in each queue (PDF renders, replays).", labels=["queue"]
    )
    up = 1
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            channel = conn.default_channel
            for queue in sorted({app.conf.task_default_queue, *(q.name for q in app.conf.task_queues or ())}):
                try:
                    depth.add_metric([queue], channel.queue_declare(queue=queue, passive=True).message_count)
                except ChannelError:  # never declared yet: nothing was ever queued there
                    depth.add_metric([queue], 0)
    except Exception as error:  # noqa: BLE001 - an unreachable broker is a value, not a failed scrape
        logger.warning("metrics: the Celery broker did not answer: %s", error)
        up = 0
    if up:
        yield depth
    yield GaugeMetricFamily("logiflow_celery_broker_up", "Whether the Celery broker answered this scrape.", value=up)


def flow_registry() -> CollectorRegistry:
    """The web's registry: its own process's metrics plus the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowCollector())
    return registry


def serve_worker_metrics(port: int, *, name: str) -> bool:
    """Expose this process's metrics on `port` (0: off); False when the port could not be bound."""
    if not port:
        return False
    try:
        start_http_server(port, addr=settings.WORKER_METRICS_ADDR, registry=_process_registry())
    except OSError as error:
        # Metrics are not worth a dead worker: log and keep relaying.
        logger.error("%s: cannot serve metrics on port %s: %s", name, port, error)
        return False
    logger.info("%s: metrics on http://%s:%s/metrics", name, settings.WORKER_METRICS_ADDR, port)
    return True


def _process_registry() -> CollectorRegistry:
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


def _route_label(request: HttpRequest) -> str:
    """`/api/v1/trucks/<pk>/` for DRF's regex routes as for path() ones; `<unmatched>` for a 404 or a request a
    middleware answered before URL resolution."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return "<unmatched>"
    return "/" + _REGEX_GROUP.sub(r"<\1>", match.route).replace("^", "").replace("$", "")


def metrics_allowed(request: HttpRequest) -> bool:
    """The web's /metrics: a matching bearer token (METRICS_TOKEN), or a client in METRICS_ALLOWED_NETWORKS."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and secrets.compare_digest(header[7:].encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in settings.METRICS_ALLOWED_NETWORKS)


_DATABASE_UP = (
    b"# HELP logiflow_metrics_database_up Whether the web could read the database gauges for this scrape.\n"
    b"# TYPE logiflow_metrics_database_up gauge\nlogiflow_metrics_database_up %s\n"
)


def metrics_response() -> HttpResponse:
    """This process's metrics, then the database gauges; without a database, the first alone (with
    `logiflow_metrics_database_up 0`), so a database outage does not blind the scrape."""
    body = generate_latest(_process_registry())
    try:
        body += generate_latest(flow_registry()) + _DATABASE_UP % b"1"
    except Exception:  # noqa: BLE001 - any failure to read the gauges
        logger.exception("metrics: the database gauges could not be read")
        body += _DATABASE_UP % b"0"
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
