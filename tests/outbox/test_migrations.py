"""The outbox's schema changes keep what is queued, and keep the previous release's writes working."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction

from apps import outbox
from apps.outbox.models import PendingEvent
from tests.factories import invoice_generated
from tests.support.migrations import latest, migrate




@pytest.mark.django_db(transaction=True)
def test_adding_topic_to_the_queue_keeps_pending_rows_and_gives_them_their_topic() -> None:
    newest = latest("outbox")
    migrate([("outbox", "0002_pending_queue")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH written AS (
                    INSERT INTO outbox_outboxevent (event_id, topic, key, event_type, source, payload, traceparent,
                                                    created_at, state, attempts, last_error)
                    VALUES (%s, 'invoicing.events', '7', 'logiflow.invoicing.InvoiceGenerated.v1',
                            '/logiflow/invoicing', '{}', '', now(), 'pending', 0, '')
                    RETURNING id, key
                )
                INSERT INTO outbox_pending (id, key) SELECT id, key FROM written
                """,
                [uuid.uuid4()],
            )
    finally:
        migrate(newest)
    [queued] = PendingEvent.objects.all()
    assert (queued.topic, queued.key) == ("invoicing.events", "7")


@pytest.mark.django_db(transaction=True)
def test_previous_release_queueing_without_topic_still_works_during_a_rolling_deploy() -> None:
    with transaction.atomic():
        outbox.publish(invoice_generated(route_id=7))
    PendingEvent.objects.all().delete()
    with connection.cursor() as cursor:  # what the previous release's publish writes
        cursor.execute("INSERT INTO outbox_pending (id, key) SELECT id, key FROM outbox_outboxevent")
    [queued] = PendingEvent.objects.all()
    assert (queued.topic, queued.key) == ("invoicing.events", "route:7")
