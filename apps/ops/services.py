"""The event flow's minute samples (Celery beat, every minute): what the relay published, the backlog, latency,
lag and dead letters, read from every app's tables; and consumer lag sampled from the broker, from outside the
consumers (beat every CONSUMER_LAG_SAMPLE_INTERVAL_S, the web's /metrics when scraped)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from confluent_kafka import KafkaException
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.common.kafka import kafka_topic
from apps.consumers import registry
from apps.consumers.models import DeadLetter
from apps.consumers.positions import outside_positions
from apps.consumers.selectors import unresolved
from apps.consumers.watchdog import Position
from apps.ops.models import FlowSample, PartitionLag
from apps.ops.selectors import lag_totals
from apps.outbox.models import OutboxEvent
from apps.outbox.selectors import outbox_backlog

logger = logging.getLogger(__name__)

# Outbox row created → inbox row of a consumer group, for the events applied in the window.
_LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.95) WITHIN GROUP (ORDER BY s)
FROM (SELECT EXTRACT(EPOCH FROM i.processed_at - o.created_at) AS s
      FROM consumers_inboxentry i JOIN outbox_outboxevent o ON o.event_id = i.event_id
      WHERE i.processed_at >= %s AND i.processed_at < %s) AS latencies
"""


def flow_sample_take(*, now: datetime | None = None) -> FlowSample:
    """Record one sample of the flow (beat, every minute) and drop samples past FLOW_SAMPLE_RETENTION_HOURS.

    Published rows are counted without touching the outbox's unindexed state: rows created in the window
    minus the growth of the relay's queue since the previous sample (a row that left the queue was published,
    or refused for good, which the relay counts as failed).
    """
    now = now or timezone.now()
    previous = FlowSample.objects.filter(at__lt=now, at__gte=now - timedelta(minutes=5)).order_by("-at").first()
    start = previous.at if previous else now - timedelta(minutes=1)
    backlog = outbox_backlog()
    published = None
    if previous is not None:
        created = OutboxEvent.objects.filter(created_at__gte=start, created_at__lt=now).count()
        published = max(0, created - (backlog.unpublished - previous.backlog))
    with connection.cursor() as cursor:
        cursor.execute(_LATENCY, [start, now])
        p50, p95 = cursor.fetchone()
    sample = FlowSample.objects.create(
        at=now, window_seconds=(now - start).total_seconds(), published=published, backlog=backlog.unpublished,
        oldest_pending_age_s=backlog.oldest_age.total_seconds() if backlog.oldest_age else 0.0,
        latency_p50_s=p50, latency_p95_s=p95, lag=lag_totals(since=now - timedelta(minutes=1)),
        dead_letters=unresolved().count(),
        dead_lettered=DeadLetter.objects.filter(first_failed_at__gte=start, first_failed_at__lt=now).count(),
    )
    FlowSample.objects.filter(at__lt=now - timedelta(hours=settings.FLOW_SAMPLE_RETENTION_HOURS)).delete()
    return sample


def consumer_lag_sample(*, now: datetime | None = None, timeout: float = 5.0) -> list[str]:
    """Read where each registered consumer group stands on its topics' partitions from the broker, as a client
    that never joins the group, and record it (PartitionLag). Returns the groups the broker did not answer for
    within `timeout` (after the first such group the rest are not asked); their last sample stays as it was.
    `now` is the sample's timestamp (tests drive the stall clock with it)."""
    groups = {group: registry.topics_for(group) for group in registry.groups()}  # the group id is its name
    unanswered: list[str] = []
    for group, topics in groups.items():
        if unanswered:  # the broker is not answering: the next group would only wait as long again
            unanswered.append(group)
            continue
        try:
            positions = outside_positions(group, topics, timeout=timeout)
        except KafkaException as error:
            logger.warning("consumer lag: %s not read from the broker: %s", group, error)
            unanswered.append(group)
            continue
        read = [kafka_topic(topic) for topic in topics]
        _record_positions(group=group, topics=read, positions=positions, at=now or timezone.now())
    PartitionLag.objects.exclude(group__in=groups).delete()
    return unanswered


@transaction.atomic
def _record_positions(*, group: str, topics: list[str], positions: list[Position], at: datetime) -> None:
    """One group's sample; rows locked, so the beat and a scrape recording at once keep the newer sample. A
    partition missing from `positions` (its topic's metadata did not answer) keeps its row and its stall clock."""
    PartitionLag.objects.filter(group=group).exclude(topic__in=topics).delete()  # topics it no longer reads
    rows = {(row.topic, row.partition): row for row in PartitionLag.objects.select_for_update().filter(group=group)}
    changed, added = [], []
    for position in positions:
        row = rows.pop((position.topic, position.partition), None)
        if row is not None and row.sampled_at > at:
            continue
        if row is None:
            row = PartitionLag(group=group, topic=position.topic, partition=position.partition)
            added.append(row)
        else:
            changed.append(row)
        row.observe(committed=position.committed, high=position.high, at=at)
    PartitionLag.objects.bulk_update(changed, ["committed", "high", "sampled_at", "stuck_since"])
    PartitionLag.objects.bulk_create(added, ignore_conflicts=True)  # a concurrent sample added it: theirs stands
