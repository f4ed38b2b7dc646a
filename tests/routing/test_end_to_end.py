"""Routing's InvoiceGenerated handler through the real pipeline: outbox → `relay_outbox` process → broker →
`consume routing` process. Invoicing is not involved: the test writes the events to the outbox as it would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from apps import outbox
from apps.common.kafka import client_config
from apps.consumers.models import DeadLetter, InboxEntry
from apps.contracts import InvoiceGenerated
from apps.outbox.models import OutboxEvent
from apps.routing.models import Route
from tests.consumers.support import RawProducer
from tests.factories import invoice_generated
from tests.routing.factories import calculated_route

pytestmark = pytest.mark.django_db(transaction=True)

ISSUED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def start_command(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`manage.py <args>` as a real process on the test database and broker; killed at the end if still running."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{args[0]}-{len(processes)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=subprocess_env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        process.log_path = Path(log.name)  # type: ignore[attr-defined]
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def log_of(process: subprocess.Popen[bytes]) -> str:
    return process.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_of(process)[-3000:]


def wait_until(condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        time.sleep(0.2)


def group_from_now(topic: str) -> str:
    """A Kafka group id committed at the topic's current ends: it sees only this test's events, not those
    earlier tests of the session left on the shared topic."""
    group_id = f"routing-e2e-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(client_config(**{"group.id": group_id, "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()
    return group_id


def issue(*, route_id: int, number: str) -> uuid.UUID:
    """What invoicing does when it issues an invoice: publish InvoiceGenerated in its transaction."""
    with transaction.atomic():
        return outbox.publish(invoice_generated(route_id=route_id, number=number, issued_at=ISSUED))


def redeliver(event_id: uuid.UUID) -> None:
    """Send an already published outbox row again, byte for byte and to the same partition, as a relay that
    crashed after the broker's acknowledgement but before recording it would."""
    published = OutboxEvent.objects.filter(event_id=event_id, state=OutboxEvent.State.PUBLISHED)
    # The consumer may apply an event before the relay has recorded the broker's acknowledgement.
    wait_until(published.exists, what="the relay recording the first send")
    row = published.get()
    producer = RawProducer(row.topic)
    producer.send(value=row.payload.encode(), key=row.key, headers=row.headers(), partition=row.partition)
    producer.flush()


def test_invoice_generated_through_relay_and_consumer_processes_marks_the_route_once_and_dead_letters_unknown_routes(
    start_command: Callable[..., subprocess.Popen[bytes]],
) -> None:
    group_id = group_from_now(InvoiceGenerated.topic())
    route, other = calculated_route(), calculated_route()
    relay = start_command("relay_outbox")
    consumer = start_command("consume", "routing", "--group-id", group_id)

    first = issue(route_id=route.pk, number="LF-2026-000001")
    wait_until(lambda: Route.objects.get(pk=route.pk).invoiced, what="route marked invoiced")
    route.refresh_from_db()
    assert (route.invoice_number, route.invoiced_at) == ("LF-2026-000001", ISSUED)

    # A duplicate delivery (same event id), then the same invoice announced again under a new event id.
    # Both carry the route's key, so they share a partition: once the second is in the inbox, the first was seen.
    redeliver(first)
    again = issue(route_id=route.pk, number="LF-2026-000001")
    wait_until(lambda: InboxEntry.objects.filter(group="routing", event_id=again).exists(), what="re-announcement")
    assert InboxEntry.objects.filter(group="routing", event_id=first).count() == 1
    assert Route.objects.filter(pk=route.pk, invoice_number="LF-2026-000001", invoiced_at=ISSUED).exists()

    unknown_route = (Route.objects.aggregate(last=Max("pk"))["last"] or 0) + 1000
    orphan = issue(route_id=unknown_route, number="LF-2026-000002")
    following = issue(route_id=other.pk, number="LF-2026-000003")
    wait_until(lambda: DeadLetter.objects.filter(event_id=orphan).exists(), what="dead letter")
    wait_until(lambda: Route.objects.get(pk=other.pk).invoice_number == "LF-2026-000003", what="the next route")

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
