"""Reads of the outbox for people: how far behind the relay is, what it cannot send, what failed."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min
from django.utils import timezone

from apps.outbox.models import OutboxEvent, PendingEvent, RelayProblem


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


def relay_problems() -> list[RelayProblem]:
    """Refusals only a person can fix (ACL, missing topic, policy) that the relay keeps retrying."""
    return list(RelayProblem.objects.order_by("topic", "code"))


def relay_degraded() -> bool:
    """For `/readyz`: the relay keeps being refused somewhere (what and why: admin and log, not the probe)."""
    return RelayProblem.objects.exists()


def failed_event_ids(event_ids: Sequence[int] | None = None) -> list[int]:
    """Ids of `failed` rows, in id order: all of them (a scan: no index covers `state`), or among `event_ids`."""
    rows = OutboxEvent.objects.filter(state=OutboxEvent.State.FAILED)
    if event_ids is not None:
        rows = rows.filter(pk__in=event_ids)
    return list(rows.order_by("id").values_list("id", flat=True))
