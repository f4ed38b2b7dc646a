"""The web's /metrics: this process's metrics plus gauges read from the database (outbox backlog, dead-letter
ledger, heartbeats), the Celery broker's queues and the consumer groups' lag read from the Kafka broker when
scraped, for Prometheus with a token or from an allowed network."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.http import HttpResponse
from kombu.exceptions import ChannelError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.common.metrics import process_registry
from apps.common.selectors import heartbeats_with_age
from apps.consumers.selectors import ledger_counts
from apps.ops.selectors import consumer_lag
from apps.ops.services import consumer_lag_sample
from apps.outbox.selectors import outbox_backlog
from logiflow.celery import app

logger = logging.getLogger(__name__)

# Failure-group series per consumer group in /metrics; the admin's failure groups list them all.
FAILURE_GROUP_SERIES = 20


class FlowCollector(Collector):
    """Gauges read from the database at scrape time: the outbox backlog, the ledger, the heartbeats."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = outbox_backlog()
        yield GaugeMetricFamily(
            "logiflow_outbox_pending", "Outbox rows waiting for the relay.", value=backlog.unpublished
        )
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
        for (group, fingerprint), count in failure_group_series(ledger_counts(by_fingerprint=True)):
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


def failure_group_series(counts: dict[tuple[str, str], int]) -> list[tuple[tuple[str, str], int]]:
    """A group's FAILURE_GROUP_SERIES largest failure groups, the rest summed as fingerprint "other": fingerprints
    come from messages that echo producer text, so whoever can write to a topic could otherwise mint series."""
    by_group: dict[str, list[tuple[int, str]]] = {}
    for (group, fingerprint), count in counts.items():
        by_group.setdefault(group, []).append((count, fingerprint))
    series = []
    for group, groups in sorted(by_group.items()):
        groups.sort(key=lambda item: (-item[0], item[1]))
        series += [((group, fingerprint), count) for count, fingerprint in groups[:FAILURE_GROUP_SERIES]]
        if rest := groups[FAILURE_GROUP_SERIES:]:
            series.append(((group, "other"), sum(count for count, _ in rest)))
    return series


class ConsumerLagCollector(Collector):
    """Each consumer group's lag read from the broker at scrape time, from outside the consumers (so a stopped
    one shows its lag growing), recorded like a beat sample; a group whose lag stood still for
    CONSUMER_LAG_STALL_SECONDS is stalled. A broker that does not answer within `timeout` per group leaves the
    last sample's numbers and reports `logiflow_consumer_lag_broker_up 0`."""

    def __init__(self, *, timeout: float = 1.0) -> None:
        self.timeout = timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        unanswered = consumer_lag_sample(timeout=self.timeout)
        lag = GaugeMetricFamily(
            "logiflow_consumer_group_lag", "Messages after the group's committed offset, read from the broker.",
            labels=["group", "topic", "partition"],
        )
        stalled = GaugeMetricFamily(
            "logiflow_consumer_group_stalled", "1 while a partition of the group has lag and no progress for "
            "CONSUMER_LAG_STALL_SECONDS.", labels=["group"],
        )
        still = GaugeMetricFamily(
            "logiflow_consumer_group_no_progress_seconds",
            "Seconds the group's longest-lagging partition has gone without its committed offset moving.",
            labels=["group"],
        )
        for group in consumer_lag():
            for partition in group.partitions:
                lag.add_metric([group.group, partition.topic, str(partition.partition)], partition.lag)
            stalled.add_metric([group.group], 1 if group.stalled else 0)
            still.add_metric([group.group], group.stalled_for)
        yield from (lag, stalled, still)
        yield GaugeMetricFamily(
            "logiflow_consumer_lag_broker_up", "Whether the Kafka broker answered this scrape's lag reads.",
            value=0 if unanswered else 1,
        )


# What only the relay and the consumers record, served on their own ports: in the web process these are
# always 0 (or empty), and a scraper reading them here would take the silence for health.
WORKER_ONLY = ("logiflow_relay_", "logiflow_consumer_", "logiflow_worker_")


class WebProcessCollector(Collector):
    """This process's metrics without the workers' own (WORKER_ONLY)."""

    def collect(self) -> Iterator[Metric]:
        for family in process_registry().collect():
            if not family.name.startswith(WORKER_ONLY):
                yield family


def web_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WebProcessCollector())
    return registry


def flow_registry() -> CollectorRegistry:
    """The web's registry: its own process's metrics plus the database gauges and consumer lag."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowCollector())
    registry.register(ConsumerLagCollector())
    return registry


_DATABASE_UP = (
    b"# HELP logiflow_metrics_database_up Whether the web could read the database gauges for this scrape.\n"
    b"# TYPE logiflow_metrics_database_up gauge\nlogiflow_metrics_database_up %s\n"
)


def metrics_response() -> HttpResponse:
    """This process's metrics (less the workers' own), then the database gauges; without a database, the first
    alone (with `logiflow_metrics_database_up 0`), so a database outage does not blind the scrape."""
    body = generate_latest(web_registry())
    try:
        body += generate_latest(flow_registry()) + _DATABASE_UP % b"1"
    except Exception:  # noqa: BLE001 - any failure to read the gauges
        logger.exception("metrics: the database gauges could not be read")
        body += _DATABASE_UP % b"0"
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
