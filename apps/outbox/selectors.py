"""Reads of the outbox for people: how far behind the relay is."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min
from django.utils import timezone

from apps.outbox.models import PendingEvent


@dataclass(frozen=True)
class Backlog:
    unpublished: int
    oldest_created_at: datetime | None

    @property
    def oldest_age(self) -> timedelta | None:
        if self.oldest_created_at is None:
            return None
        return timedelta(seconds=round((timezone.now() - self.oldest_created_at).total_seconds()))


def outbox_backlog(*, sources: Collection[str] | None = None) -> Backlog:
    """Rows still queued for the relay, and the creation time of the oldest one (queue joined by id); only those of
    `sources` (CloudEvents sources) when given."""
    queue = PendingEvent.objects.all() if sources is None else PendingEvent.objects.filter(event__source__in=sources)
    summary = queue.aggregate(unpublished=Count("pk"), oldest=Min("event__created_at"))
    return Backlog(unpublished=summary["unpublished"], oldest_created_at=summary["oldest"])
