"""Celery tasks of the common infrastructure: thin wrappers over its services."""

from __future__ import annotations

from celery import shared_task

from apps.common.services import flow_sample_take, heartbeats_prune


@shared_task
def prune_heartbeats() -> int:
    """Retention (beat, hourly): heartbeats silent for HEARTBEAT_RETENTION_HOURS."""
    return heartbeats_prune()


@shared_task
def sample_flow() -> int:
    """The dashboard's charts (beat, every minute): one sample of the flow; returns its id."""
    return flow_sample_take().pk
