"""Pending rows without a queue entry (an older release wrote them during a rolling deploy) are found and sent."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.db import connection, transaction

from apps import outbox
from apps.outbox.models import OutboxEvent, PendingEvent
from apps.outbox.relay import OutboxRelay
from apps.outbox.tasks import requeue_stranded_events
from tests.factories import route_calculated
from tests.outbox.support import pending_count, wait_for


def _write_as_an_older_release(*, truck: int, calculation: int) -> int:
    """The outbox row alone, as a release from before the relay's queue wrote it."""
    event = route_calculated(truck_id=truck, calculation=calculation)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO outbox_outboxevent (event_id, topic, key, event_type, source, payload, traceparent,
                                            created_at, state, attempts, last_error)
            VALUES (%s, %s, %s, %s, %s, %s, '', now(), 'pending', 0, '') RETURNING id
            """,
            [uuid.uuid4(), type(event).topic(), event.partition_key(), type(event).ce_type(), type(event).ce_source(),
             event.model_dump_json()],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_beat_sweep_queues_stranded_rows_in_id_order_and_leaves_queued_and_final_rows_alone() -> None:
    with transaction.atomic():
        outbox.publish(route_calculated(truck_id=9))  # queued already
    stranded = [_write_as_an_older_release(truck=1, calculation=n) for n in (1, 2)]
    published = _write_as_an_older_release(truck=2, calculation=1)
    OutboxEvent.objects.filter(pk=published).update(state="published")

    assert requeue_stranded_events() == 2
    assert requeue_stranded_events() == 0  # idempotent

    queued = list(PendingEvent.objects.filter(pk__in=stranded).order_by("pk").values_list("pk", "topic", "key"))
    assert queued == [(stranded[0], "routing.events", "truck:1"), (stranded[1], "routing.events", "truck:1")]
    assert not PendingEvent.objects.filter(pk=published).exists()
    assert "outbox-requeue-stranded" in settings.CELERY_BEAT_SCHEDULE


@pytest.mark.django_db(transaction=True)
def test_relay_queues_stranded_rows_when_it_starts_and_publishes_them(kafka_bootstrap: str) -> None:
    stranded = [_write_as_an_older_release(truck=3, calculation=n) for n in (1, 2)]

    relay = OutboxRelay()
    relay.setup()
    try:
        assert wait_for(lambda: (relay.run_once(), pending_count())[1] == 0, timeout=20, interval=0)
    finally:
        relay.teardown()

    rows = OutboxEvent.objects.filter(pk__in=stranded).order_by("pk")
    assert [row.state for row in rows] == ["published", "published"]
    assert rows[0].published_at <= rows[1].published_at
