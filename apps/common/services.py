"""Writes of worker liveness: a worker's heartbeat, its removal on a clean stop, and pruning of old rows."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.common.models import Heartbeat


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
