"""Shared writes: `model_update` for every app's services; the flow's observations: a worker's heartbeat (removed on a clean stop, pruned when old) and the
minute samples behind the dashboard's charts."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, models
from django.utils import timezone

from apps.common.models import FlowSample, Heartbeat

M = TypeVar("M", bound=models.Model)


def model_update(
    *, instance: M, fields: Sequence[str], data: Mapping[str, Any], also: Mapping[str, Any] | None = None,
) -> tuple[M, bool]:
    """The one way services change a row: apply the entries of `data` named in `fields` that differ; when any
    did, also set `also` (e.g. a revision), validate the whole row and save only the changed columns (with its
    `auto_now` ones). Returns the instance and whether it changed. Call it inside the service's transaction."""
    changed = [name for name in fields if name in data and getattr(instance, name) != data[name]]
    if not changed:
        return instance, False
    for name in changed:
        setattr(instance, name, data[name])
    for name, value in (also or {}).items():
        setattr(instance, name, value)
    instance.full_clean()
    stamped = [f.name for f in instance._meta.concrete_fields if getattr(f, "auto_now", False)]
    instance.save(update_fields=[*changed, *(also or {}), *stamped])
    return instance, True


def heartbeat_beat(
    *, kind: str, group: str = "", started_at: datetime, last_batch_at: datetime | None,
    partitions: list[dict[str, Any]] | None = None,
) -> None:
    """Record this process's heartbeat (one upsert, autocommit)."""
    Heartbeat.objects.update_or_create(
        kind=kind, group=group, host=socket.gethostname(), pid=os.getpid(),
        defaults={
            "started_at": started_at, "beat_at": timezone.now(), "last_batch_at": last_batch_at,
            "partitions": partitions or [],
        },
    )


def heartbeat_remove(*, kind: str, group: str = "") -> None:
    """A clean stop: the process is gone on purpose, it must not show as silent."""
    Heartbeat.objects.filter(kind=kind, group=group, host=socket.gethostname(), pid=os.getpid()).delete()


def heartbeats_prune(*, older_than: timedelta | None = None) -> int:
    """Delete heartbeats silent for longer than HEARTBEAT_RETENTION_HOURS (crashed or moved processes)."""
    older_than = older_than or timedelta(hours=settings.HEARTBEAT_RETENTION_HOURS)
    deleted, _ = Heartbeat.objects.filter(beat_at__lt=timezone.now() - older_than).delete()
    return deleted


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
    from apps.consumers.selectors import unresolved
    from apps.consumers.models import DeadLetter
    from apps.outbox.models import OutboxEvent
    from apps.outbox.selectors import outbox_backlog

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
    from apps.common.selectors import live_partitions

    totals: dict[str, int] = {}
    for (group, _topic, _partition), lag in live_partitions().items():
        totals[group] = totals.get(group, 0) + lag
    return totals
