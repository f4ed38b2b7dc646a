"""The event flow's minute samples (Celery beat, every minute): what the relay published, the backlog, latency,
lag and dead letters, read from every app's tables."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.common.selectors import live_partitions
from apps.consumers.models import DeadLetter
from apps.consumers.selectors import unresolved
from apps.ops.models import FlowSample
from apps.outbox.models import OutboxEvent
from apps.outbox.selectors import outbox_backlog

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
        latency_p50_s=p50, latency_p95_s=p95, lag=_lag_by_group(),
        dead_letters=unresolved().count(),
        dead_lettered=DeadLetter.objects.filter(first_failed_at__gte=start, first_failed_at__lt=now).count(),
    )
    FlowSample.objects.filter(at__lt=now - timedelta(hours=settings.FLOW_SAMPLE_RETENTION_HOURS)).delete()
    return sample


def _lag_by_group() -> dict[str, int]:
    """Total lag per consumer group from live heartbeats; a partition reported twice (a rebalance between two
    heartbeats) counts once, from the newest heartbeat."""
    totals: dict[str, int] = {}
    for (group, _topic, _partition), lag in live_partitions().items():
        totals[group] = totals.get(group, 0) + lag
    return totals
