"""Celery tasks of the common infrastructure: thin wrappers over its services."""

from __future__ import annotations

from celery import shared_task

from apps.common.services import heartbeats_prune


@shared_task
def prune_heartbeats() -> int:
    """Retention (beat, hourly): heartbeats silent for HEARTBEAT_RETENTION_HOURS."""
    return heartbeats_prune()

