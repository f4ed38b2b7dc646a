"""Invoicing through the real consumer runtime and broker: volume with two processes, and the replay story."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from apps.consumers.models import DeadLetter
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import InvoiceGenerated, RouteCalculated
from apps.invoicing.models import Invoice
from apps.outbox.models import OutboxEvent
from tests.consumers.support import RawProducer, drain
from tests.invoicing.factories import BillingAccountFactory, UserFactory, role_group, three_stop_route

pytestmark = pytest.mark.django_db(transaction=True)

ROUTES = 200
# The routing topic is shared by the whole test session: these tests use customers and routes no other test
# uses, and count only their own rows (other tests' events meet no billing account here and are dead-lettered).
CUSTOMERS = range(9001, 9005)
FIRST_ROUTE = 700_000


def wait_until(condition: Callable[[], bool], *, timeout: float, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {explain()}"
        time.sleep(0.5)


@pytest.fixture
def start_consumer(
    subprocess_env: dict[str, str], celery_queue: Path, media_root: Path, tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """`manage.py consume invoicing` as real processes, on the test database and broker."""
    processes: list[subprocess.Popen[bytes]] = []
    env = {**subprocess_env, "CELERY_FILESYSTEM_DIR": str(celery_queue), "MEDIA_ROOT": str(media_root)}

    def start(group_id: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"consume-{len(processes)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "manage.py", "consume", "invoicing", "--group-id", group_id],
            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        process.log_path = Path(log.name)  # type: ignore[attr-defined]
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def handled(process: subprocess.Popen[bytes]) -> int:
    """Messages the process applied, from the counters it logs when it stops."""
    counts = re.findall(r"handled=(\d+)", process.log_path.read_text(errors="replace"))  # type: ignore[attr-defined]
    return int(counts[-1]) if counts else 0


def test_200_events_through_two_consumer_processes_issue_200_invoices_with_gapless_numbers(
    start_consumer: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    for customer_id in CUSTOMERS:
        BillingAccountFactory(customer_id=customer_id)
    producer = RawProducer(RouteCalculated.topic())
    routes = range(FIRST_ROUTE, FIRST_ROUTE + ROUTES)
    for n, route_id in enumerate(routes):
        event = three_stop_route(route_id=route_id, truck_id=100 + n % 24, customer_id=CUSTOMERS[n % len(CUSTOMERS)])
        producer.event(event, partition=n % settings.KAFKA_TOPIC_PARTITIONS)
    producer.flush()

    group_id = f"invoicing-e2e-{uuid.uuid4().hex[:8]}"
    consumers = [start_consumer(group_id), start_consumer(group_id)]
    mine = Invoice.objects.filter(route_id__in=routes)
    wait_until(lambda: mine.count() == ROUTES, timeout=180, explain=lambda: f"{mine.count()} invoices")
    for process in consumers:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert len(numbers) == ROUTES == len(set(numbers))
    assert [int(number[-6:]) for number in numbers] == list(range(1, ROUTES + 1))
    assert sorted(mine.values_list("route_id", flat=True)) == list(routes)
    assert OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type()).count() == ROUTES
    counts = [handled(process) for process in consumers]
    print("handled per consumer process:", counts)
    assert sum(counts) >= ROUTES


def test_missing_billing_data_goes_to_the_ledger_and_a_replay_after_finance_adds_it_issues_once(
    kafka_bootstrap: str,
) -> None:
    customer_id, route_id = 9100, FIRST_ROUTE + 5000
    event = three_stop_route(route_id=route_id, customer_id=customer_id, customer_name="Ege Foods", truck_id=91)
    producer = RawProducer(RouteCalculated.topic())
    event_id = producer.event(event, partition=1)
    producer.flush()

    worker = ConsumerWorker("invoicing", group_id=f"invoicing-e2e-{uuid.uuid4().hex[:8]}")
    worker.setup()
    try:
        drain(worker, lambda: DeadLetter.objects.filter(event_id=event_id).exists(), timeout=60)
    finally:
        worker.teardown()
    dead_letter = DeadLetter.objects.get(event_id=event_id)
    assert dead_letter.reason == DeadLetter.Reason.NON_RETRYABLE
    assert dead_letter.attempts == 1, "a missing account is not retried"
    assert "customer 9100 (Ege Foods) has no billing account" in dead_letter.error_message
    assert not Invoice.objects.filter(route_id=route_id).exists()

    role_group("operations", ["consumers.view_deadletter", "consumers.replay_deadletter"])
    operations = APIClient()
    operations.force_authenticate(UserFactory(role="operations"))
    replay_url = f"/api/v1/dead-letters/{dead_letter.pk}/replay/"
    too_early = operations.post(replay_url)
    assert (too_early.status_code, too_early.json()["outcome"]) == (200, "failed")
    assert not Invoice.objects.filter(route_id=route_id).exists()

    finance = APIClient()
    finance.force_authenticate(UserFactory(role="finance"))
    created = finance.post("/api/v1/billing-accounts/", {
        "customer_id": customer_id, "name": "Ege Foods A.S.", "billing_address": "Alsancak\nIzmir",
        "rate_per_km": "1.2500", "fee_per_stop": "15.00", "fuel_surcharge_percent": "7.50", "vat_rate_percent": "20",
    }, format="json")
    assert created.status_code == 201, created.json()

    replayed = operations.post(replay_url)
    assert (replayed.status_code, replayed.json()["outcome"]) == (200, "applied"), replayed.json()
    assert operations.post(replay_url).status_code == 400  # already replayed: refused

    invoice = Invoice.objects.get(route_id=route_id)
    assert (invoice.customer_name, str(invoice.gross_total), invoice.source_event_id) == (
        "Ege Foods A.S.", "722.95", event_id,
    )
    assert OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type(), key=str(route_id)).count() == 1
    dead_letter.refresh_from_db()
    assert dead_letter.status == DeadLetter.Status.REPLAYED
