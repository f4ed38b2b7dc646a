"""Retention: published rows past OUTBOX_RETENTION_HOURS go, in batches; pending and failed rows stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from apps import outbox
from apps.outbox.models import OutboxEvent, PendingEvent
from apps.outbox.services import outbox_events_purge
from apps.outbox.tasks import purge_published_events
from tests.factories import route_calculated


def _rows(count: int, *, state: str, age: timedelta) -> None:
    with transaction.atomic():
        ids = [outbox.publish(route_calculated(truck_id=1 + n)) for n in range(count)]
    at = timezone.now() - age
    published_at = at if state == OutboxEvent.State.PUBLISHED else None
    OutboxEvent.objects.filter(event_id__in=ids).update(state=state, created_at=at, published_at=published_at)
    if state != OutboxEvent.State.PENDING:  # as the relay leaves a row it marked: out of its queue
        PendingEvent.objects.filter(event__event_id__in=ids).delete()


@pytest.mark.django_db(transaction=True)
def test_purge_deletes_only_published_rows_older_than_retention_in_batches() -> None:
    _rows(7, state=OutboxEvent.State.PUBLISHED, age=timedelta(hours=30))
    _rows(2, state=OutboxEvent.State.PUBLISHED, age=timedelta(hours=1))
    _rows(1, state=OutboxEvent.State.FAILED, age=timedelta(hours=30))
    _rows(1, state=OutboxEvent.State.PENDING, age=timedelta(hours=30))

    purged = outbox_events_purge(older_than=timedelta(hours=24), batch_size=3)

    assert purged == 7
    remaining = sorted(OutboxEvent.objects.values_list("state", flat=True))
    assert remaining == ["failed", "pending", "published", "published"]


@pytest.mark.django_db(transaction=True)
def test_purge_command_and_beat_task_apply_the_configured_retention(settings) -> None:  # noqa: ANN001
    settings.OUTBOX_RETENTION_HOURS = 2
    _rows(2, state=OutboxEvent.State.PUBLISHED, age=timedelta(hours=3))
    assert purge_published_events() == 2

    _rows(1, state=OutboxEvent.State.PUBLISHED, age=timedelta(hours=3))
    call_command("purge_outbox")
    assert OutboxEvent.objects.count() == 0
