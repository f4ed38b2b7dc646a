"""Routing's InvoiceGenerated handler through the real pipeline: outbox → `relay_outbox` process → broker →
`consume routing` process. Invoicing is not involved: the test writes the events to the outbox as it would."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.db.models import Max

from apps import outbox
from apps.common.kafka import kafka_topic
from apps.consumers.models import DeadLetter, InboxEntry
from apps.outbox.models import OutboxEvent
from apps.routing.models import Route
from tests.consumers.support import RawProducer
from tests.factories import invoice_generated
from tests.routing.factories import calculated_route
from tests.support.processes import log_of, stop, wait_until

# Each test gets its own topics: other tests' events never reach its consumer.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_topics")]

ISSUED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def new_group() -> str:
    return f"routing-e2e-{uuid.uuid4().hex[:8]}"


def issue(*, route_id: int, number: str) -> uuid.UUID:
    """What invoicing does when it issues an invoice: publish InvoiceGenerated in its transaction."""
    with transaction.atomic():
        return outbox.publish(invoice_generated(route_id=route_id, number=number, issued_at=ISSUED))


def redeliver(event_id: uuid.UUID) -> None:
    """Send an already published outbox row again, byte for byte and to the same partition, as a relay that
    crashed after the broker's acknowledgement but before recording it would."""
    published = OutboxEvent.objects.filter(event_id=event_id, state=OutboxEvent.State.PUBLISHED)
    # The consumer may apply an event before the relay has recorded the broker's acknowledgement.
    wait_until(published.exists, explain="the relay recording the first send")
    row = published.get()
    producer = RawProducer(kafka_topic(row.topic))
    producer.send(value=row.payload.encode(), key=row.key, headers=row.headers(), partition=row.partition)
    producer.flush()


def test_invoice_generated_through_relay_and_consumer_processes_marks_the_route_once_and_dead_letters_unknown_routes(
    start_command: Callable[..., subprocess.Popen[bytes]],
) -> None:
    group_id = new_group()
    route, other = calculated_route(), calculated_route()
    relay = start_command("relay_outbox")
    consumer = start_command("consume", "routing", "--group-id", group_id)

    first = issue(route_id=route.pk, number="LF-2026-000001")
    wait_until(lambda: Route.objects.get(pk=route.pk).invoiced, explain="route marked invoiced")
    route.refresh_from_db()
    assert (route.invoice_number, route.invoiced_at) == ("LF-2026-000001", ISSUED)

    # A duplicate delivery (same event id), then the same invoice announced again under a new event id.
    # Both carry the route's key, so they share a partition: once the second is in the inbox, the first was seen.
    redeliver(first)
    again = issue(route_id=route.pk, number="LF-2026-000001")
    wait_until(lambda: InboxEntry.objects.filter(group="routing", event_id=again).exists(), explain="re-announcement")
    assert InboxEntry.objects.filter(group="routing", event_id=first).count() == 1
    assert Route.objects.filter(pk=route.pk, invoice_number="LF-2026-000001", invoiced_at=ISSUED).exists()

    unknown_route = (Route.objects.aggregate(last=Max("pk"))["last"] or 0) + 1000
    orphan = issue(route_id=unknown_route, number="LF-2026-000002")
    following = issue(route_id=other.pk, number="LF-2026-000003")
    wait_until(lambda: DeadLetter.objects.filter(event_id=orphan).exists(), explain="dead letter")
    wait_until(lambda: Route.objects.get(pk=other.pk).invoice_number == "LF-2026-000003", explain="the next route")

    stop(consumer)
    stop(relay)
    dead_letter = DeadLetter.objects.get(event_id=orphan)
    assert (dead_letter.group, dead_letter.reason, dead_letter.attempts) == (
        "routing", DeadLetter.Reason.NON_RETRYABLE, 1,
    )
    assert f"names route {unknown_route}, which routing does not know" in dead_letter.error_message
    assert DeadLetter.objects.count() == 1
    assert not InboxEntry.objects.filter(event_id=orphan).exists()
    assert InboxEntry.objects.filter(event_id=following).exists()
    # The consumer's counters, logged when it stopped: the redelivery was recognised, not applied.
    assert "handled=3 duplicates=1 skipped=0 dead_lettered=1" in log_of(consumer)
