"""Read side of the dead-letter ledger: failure groups, the age of the oldest unresolved failure, a dead letter's
payload for display."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, QuerySet
from django.utils import timezone

from apps.consumers.models import DeadLetter


@dataclass(frozen=True)
class FailureGroup:
    fingerprint: str
    reason: str
    exception_class: str
    handler: str
    sample_message: str
    count: int
    oldest: datetime

    @property
    def exception_name(self) -> str:
        """The exception's class without its module, for a person to read (the full name in a title)."""
        return self.exception_class.rsplit(".", 1)[-1]

    @property
    def handler_name(self) -> str:
        return self.handler.rsplit(".", 1)[-1]


def unresolved() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.filter(status__in=DeadLetter.UNRESOLVED)


def failure_groups(*, limit: int = 20, fingerprints: list[str] | None = None) -> list[FailureGroup]:
    """Unresolved dead letters grouped by fingerprint, largest group first; only `fingerprints` when given."""
    letters = unresolved() if fingerprints is None else unresolved().filter(fingerprint__in=fingerprints)
    rows = (
        letters.values("fingerprint")
        .annotate(count=Count("id"), oldest=Min("first_failed_at"), sample_id=Max("id"))
        .order_by("-count", "oldest")[:limit]
    )
    samples = DeadLetter.objects.in_bulk([row["sample_id"] for row in rows])
    return [
        FailureGroup(
            fingerprint=row["fingerprint"], reason=samples[row["sample_id"]].get_reason_display(),
            exception_class=samples[row["sample_id"]].exception_class,
            handler=samples[row["sample_id"]].handler, sample_message=samples[row["sample_id"]].error_message[:200],
            count=row["count"], oldest=row["oldest"],
        )
        for row in rows
    ]


def oldest_unresolved_at() -> datetime | None:
    return unresolved().aggregate(oldest=Min("first_failed_at"))["oldest"]


def oldest_pending_age() -> timedelta | None:
    oldest = oldest_unresolved_at()
    return timezone.now() - oldest if oldest else None


def unresolved_for_events(event_ids: list[Any]) -> QuerySet[DeadLetter]:
    """The unresolved dead letters of these events (any consumer group), oldest first."""
    return unresolved().filter(event_id__in=event_ids).order_by("id")


def unresolved_asking_for(*, fix_url: str) -> QuerySet[DeadLetter]:
    """The unresolved dead letters whose fix is the page `fix_url` (what their handler said would remove the
    cause), oldest first."""
    return unresolved().filter(fix_url=fix_url).order_by("id")


def unresolved_count_by_group() -> list[tuple[str, int]]:
    """How many dead letters wait for someone, per consumer group, largest first."""
    rows = unresolved().values("group").annotate(count=Count("id")).order_by("-count", "group")
    return [(row["group"], row["count"]) for row in rows]


def ledger_counts(*, by_fingerprint: bool = False) -> dict[tuple[str, str], int]:
    """(group, status) -> rows in the ledger; with `by_fingerprint`, (group, fingerprint) -> unresolved rows."""
    if by_fingerprint:
        rows = unresolved().values_list("group", "fingerprint").annotate(count=Count("id")).order_by()
    else:
        rows = DeadLetter.objects.values_list("group", "status").annotate(count=Count("id")).order_by()
    return {(group, label): count for group, label, count in rows}


def replayable(
    *, group: str | None = None, fingerprints: list[str] | None = None, statuses: list[str] | None = None
) -> QuerySet[DeadLetter]:
    """Dead letters a replay may take ("replay all in this failure group", `replay_dead_letters`), oldest
    first: pending or retrying heads (parked ones follow their head), narrowed to a consumer group and to
    failure groups when given."""
    allowed = [DeadLetter.Status.PENDING, DeadLetter.Status.RETRYING]
    rows = DeadLetter.objects.filter(status__in=statuses or allowed, blocked_by__isnull=True)
    if group is not None:
        rows = rows.filter(group=group)
    if fingerprints is not None:
        rows = rows.filter(fingerprint__in=fingerprints)
    return rows.order_by("id")


def ledger_groups() -> list[str]:
    """Consumer groups that have rows in the ledger."""
    return list(DeadLetter.objects.order_by("group").values_list("group", flat=True).distinct())


def fingerprint_of(dead_letter_id: int) -> str | None:
    """The failure group of one dead letter, None when there is no such dead letter."""
    return DeadLetter.objects.filter(pk=dead_letter_id).values_list("fingerprint", flat=True).first()


def fingerprint_known(fingerprint: str) -> bool:
    return DeadLetter.objects.filter(fingerprint=fingerprint).exists()


def payload_json(dead_letter: DeadLetter) -> Any:
    """The decoded payload for display, or None when the value is not JSON."""
    try:
        return json.loads(bytes(dead_letter.value))
    except ValueError:
        return None
