"""Celery tasks of the outbox: thin wrappers that call its services."""

from __future__ import annotations

from celery import shared_task

from apps.outbox.services import outbox_events_purge, outbox_events_requeue_stranded


@shared_task
def purge_published_events() -> int:
    """Retention: delete published outbox rows older than OUTBOX_RETENTION_HOURS (beat, hourly)."""
    return outbox_events_purge()


@shared_task
def requeue_stranded_events() -> int:
    """Queue pending rows that have no queue entry (written by an older release during a deploy) (beat)."""
    return len(outbox_events_requeue_stranded())
