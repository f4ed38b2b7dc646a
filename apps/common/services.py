"""Shared writes: `model_update` for every app's services; a worker's heartbeat (removed on a clean stop, pruned
when old)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.common.models import Heartbeat

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

