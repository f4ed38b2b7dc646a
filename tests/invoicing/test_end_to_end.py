"""Invoicing through the real consumer runtime and broker: volume with two processes, and the replay story."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from apps.common.kafka import kafka_topic
from apps.consumers.models import DeadLetter, InboxEntry
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import CustomerUpserted, InvoiceGenerated, RouteCalculated
from apps.invoicing.models import Invoice, KnownCustomer
from apps.outbox.models import OutboxEvent
from apps.routing.services import customer_create, customer_update
from tests.consumers.support import RawProducer, drain
from tests.invoicing.factories import BillingAccountFactory, KnownCustomerFactory, UserFactory, three_stop_route
from tests.outbox.support import drain_in_process
from tests.routing.conftest import DISPATCHER_PERMISSIONS
from tests.routing.factories import CustomerFactory, TruckFactory, calculated_route
from tests.support.processes import Processes, log_of, stop, wait_until

STOPS = [
    {"name": "Ankara", "lat": 39.9334, "lon": 32.8597},
    {"name": "Bursa", "lat": 40.1885, "lon": 29.0610},
    {"name": "Izmit", "lat": 40.7654, "lon": 29.9408},
]

# Each test gets its own topics: other tests' events never reach its consumers.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_topics")]

ROUTES = 200
CUSTOMERS = range(9001, 9005)
FIRST_ROUTE = 700_000


@pytest.fixture
def start_command(start_command: Processes, celery_queue: Path, media_root: Path) -> Processes:
    """Worker processes that also share this test's Celery queue folder and media root."""
    start_command.env = {**start_command.env, "CELERY_FILESYSTEM_DIR": str(celery_queue), "MEDIA_ROOT": str(media_root)}
    return start_command


def new_group() -> str:
    return f"invoicing-e2e-{uuid.uuid4().hex[:8]}"


def handled(process: subprocess.Popen[bytes]) -> int:
    """Messages the process applied, from the counters it logs when it stops."""
    counts = re.findall(r"handled=(\d+)", process.log_path.read_text(errors="replace"))  # type: ignore[attr-defined]
    return int(counts[-1]) if counts else 0


def test_200_events_through_two_consumer_processes_issue_200_invoices_with_gapless_numbers(
    start_command: Callable[..., subprocess.Popen[bytes]],
) -> None:
    group_id = new_group()
    for customer_id in CUSTOMERS:
        BillingAccountFactory(customer_id=customer_id)
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))
    routes = range(FIRST_ROUTE, FIRST_ROUTE + ROUTES)
    for n, route_id in enumerate(routes):
        event = three_stop_route(route_id=route_id, truck_id=100 + n % 24, customer_id=CUSTOMERS[n % len(CUSTOMERS)])
        producer.event(event, partition=n % settings.KAFKA_TOPIC_PARTITIONS)
    producer.flush()

    consumers = [start_command("consume", "invoicing", "--group-id", group_id) for _ in range(2)]
    # Both running (stop signals handled) before the backlog can be gone: on Apache Kafka the first member joins in
    # ~0.1 s and may drain all 200 while the second is still importing Django, where SIGTERM would just kill it.
    wait_until(lambda: all("subscribed to" in log_of(p) for p in consumers), timeout=60, explain="consumers starting")
    mine = Invoice.objects.filter(route_id__in=routes)
    wait_until(lambda: mine.count() == ROUTES, timeout=180, explain=lambda: f"{mine.count()} invoices")
    for process in consumers:
        stop(process)

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
    group_id = new_group()
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))
    event_id = producer.event(event, partition=1)
    producer.flush()

    worker = ConsumerWorker("invoicing", group_id=group_id)
    worker.setup()
    try:
        drain(worker, lambda: DeadLetter.objects.filter(event_id=event_id).exists(), timeout=60)
    finally:
        worker.teardown()
    dead_letter = DeadLetter.objects.get(event_id=event_id)
    assert dead_letter.reason == DeadLetter.Reason.NON_RETRYABLE
    assert dead_letter.attempts == 1, "a missing account is not retried"
    assert "customer 9100 'Ege Foods' has no billing account" in dead_letter.error_message
    assert (dead_letter.fix_label, dead_letter.fix_url) == (
        "Add billing account for Ege Foods", "/admin/invoicing/billingaccount/add/?customer=9100"
    )
    assert not Invoice.objects.filter(route_id=route_id).exists()

    operations = APIClient()
    operations.force_authenticate(
        UserFactory(role="operations", role__permissions=["consumers.view_deadletter", "consumers.replay_deadletter"])
    )
    replay_url = f"/api/v1/dead-letters/{dead_letter.pk}/replay/"
    too_early = operations.post(replay_url)
    assert (too_early.status_code, too_early.json()["outcome"]) == (200, "failed")
    assert not Invoice.objects.filter(route_id=route_id).exists()

    finance = APIClient()
    finance.force_authenticate(UserFactory(role="finance"))
    KnownCustomerFactory(customer_id=customer_id, name="Ege Foods")  # as routing's CustomerUpserted left it
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
    assert OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type(), key=f"route:{route_id}").count() == 1
    dead_letter.refresh_from_db()
    assert dead_letter.status == DeadLetter.Status.REPLAYED


def test_a_batch_with_a_duplicate_a_missing_account_and_a_recalculation_ends_as_message_by_message(
    kafka_bootstrap: str,
) -> None:
    """The batch handler raises on the missing account; the runtime re-applies the batch message by message,
    so the outcome is the per-message one: that message in the ledger (its route's recalculation parked behind it,
    another customer's route on the same truck invoiced), the duplicate a no-op, the recalculation credited and
    reissued, numbers gapless in message order.
    (Customer 9601 is this test's only billing account: whatever else the shared topic holds is not invoiced.)"""
    BillingAccountFactory(customer_id=9601)
    base = FIRST_ROUTE + 6000
    group_id = new_group()
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))

    def send(route_offset: int, *, truck_id: int, customer_id: int = 9601, **fields: object) -> uuid.UUID:
        route = three_stop_route(route_id=base + route_offset, truck_id=truck_id, customer_id=customer_id, **fields)
        return producer.event(route, partition=0)

    first = send(1, truck_id=601)
    send(2, truck_id=602)
    producer.event(three_stop_route(route_id=base + 1, truck_id=601, customer_id=9601), event_id=first, partition=0)
    missing = send(3, truck_id=603, customer_id=9999, customer_name="Nobody Yet")
    send(2, truck_id=602, calculation=2, distance_km=Decimal("20.000"))
    send(4, truck_id=603)  # the same truck, another route: does not wait
    parked = send(3, truck_id=603, customer_id=9999, customer_name="Nobody Yet", calculation=2)
    send(5, truck_id=604)
    producer.flush()

    worker = ConsumerWorker("invoicing", group_id=group_id)
    worker.setup()
    try:
        drain(worker, lambda: Invoice.objects.filter(route_id=base + 5).exists()
              and DeadLetter.objects.filter(event_id=parked).exists(), timeout=60)
    finally:
        worker.teardown()

    documents = list(Invoice.objects.order_by("number").values_list("number", "kind", "status", "route_id"))
    assert [(n[-6:], kind, status, route - base) for n, kind, status, route in documents] == [
        ("000001", "invoice", "issued", 1),
        ("000002", "invoice", "credited", 2),
        ("000003", "credit_note", "issued", 2),
        ("000004", "invoice", "issued", 2),
        ("000005", "invoice", "issued", 4),
        ("000006", "invoice", "issued", 5),
    ]
    assert InboxEntry.objects.filter(group="invoicing", event_id=first).count() == 1
    head = DeadLetter.objects.get(event_id=missing)
    assert (head.reason, head.attempts, head.blocked_by) == (DeadLetter.Reason.NON_RETRYABLE, 1, None)
    assert head.handler == "apps.invoicing.handlers.issue_invoice_for_route"
    assert "customer 9999 'Nobody Yet'" in head.error_message
    assert (DeadLetter.objects.get(event_id=parked).blocked_by, DeadLetter.objects.get(event_id=parked).reason) == (
        head, DeadLetter.Reason.PARKED,
    )
    published = OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type()).values_list("key", flat=True)
    assert sorted(published) == sorted(f"route:{base + route}" for route in (1, 2, 2, 4, 5))


def test_routes_created_while_the_invoicing_consumer_is_stopped_are_all_invoiced_after_it_restarts(
    start_command: Callable[..., subprocess.Popen[bytes]],
) -> None:
    invoicing_group = new_group()
    routing_group = new_group()
    dispatcher = APIClient()
    dispatcher.force_authenticate(UserFactory(role="dispatcher", role__permissions=DISPATCHER_PERMISSIONS))
    customer = CustomerFactory()
    BillingAccountFactory(customer_id=customer.pk, name=customer.name)
    trucks = [TruckFactory() for _ in range(3)]

    def create_routes(count: int) -> list[int]:
        ids = []
        for n in range(count):
            body = {"truck": trucks[n % len(trucks)].pk, "customer": customer.pk, "stops": STOPS}
            response = dispatcher.post("/api/v1/routes/", body, format="json")
            assert response.status_code == 201, response.json()
            ids.append(response.json()["id"])
        return ids

    start_command("relay_outbox")
    start_command("consume", "routing", "--group-id", routing_group)
    invoicing = start_command("consume", "invoicing", "--group-id", invoicing_group)
    before = create_routes(3)
    wait_until(lambda: Invoice.objects.filter(route_id__in=before).count() == 3, timeout=90)
    stop(invoicing)

    during = create_routes(6)  # invoicing is down: routing answers 201 all the same
    wait_until(lambda: not OutboxEvent.objects.filter(state="pending").exists(), timeout=60)
    assert not Invoice.objects.filter(route_id__in=during).exists()

    start_command("consume", "invoicing", "--group-id", invoicing_group)
    routes = before + during
    wait_until(lambda: Invoice.objects.filter(route_id__in=routes).count() == len(routes), timeout=90,
               explain=lambda: f"{Invoice.objects.count()} invoices")
    numbers = dict(Invoice.objects.values_list("route_id", "number"))
    assert sorted(int(number[-6:]) for number in numbers.values()) == list(range(1, len(routes) + 1))
    # Routing consumes InvoiceGenerated: every route ends up showing its invoice number.
    wait_until(lambda: all(dispatcher.get(f"/api/v1/routes/{r}/").json()["invoice_number"] for r in routes),
               timeout=60)
    assert {r: dispatcher.get(f"/api/v1/routes/{r}/").json()["invoice_number"] for r in routes} == numbers


def test_a_customer_created_and_renamed_in_routing_reaches_the_directory_with_its_newest_name(
    kafka_bootstrap: str,
) -> None:
    customer = customer_create(name="Ege Foods")
    customer_update(customer=customer, data={"name": "Ege Foods A.S."})
    drain_in_process()

    worker = ConsumerWorker("invoicing", group_id=new_group())
    worker.setup()
    try:
        drain(worker, lambda: KnownCustomer.objects.filter(pk=customer.pk, revision=2).exists(), timeout=60)
    finally:
        worker.teardown()
    assert KnownCustomer.objects.get(pk=customer.pk).name == "Ege Foods A.S."


# --- a dead letter holds back only what depends on it (issue 17) ------------------------------------------------


def consume_invoicing(until: Callable[[], bool], *, group_id: str | None = None) -> None:
    worker = ConsumerWorker("invoicing", group_id=group_id or new_group())
    worker.setup()
    try:
        drain(worker, until, timeout=60)
    finally:
        worker.teardown()


def route_event_id(route_id: int, *, calculation: int = 1) -> uuid.UUID:
    rows = OutboxEvent.objects.filter(event_type=RouteCalculated.ce_type(), payload__contains=f'"route_id":{route_id},')
    return next(row.event_id for row in rows if f'"calculation":{calculation},' in row.payload)


def in_ledger_or_invoiced(event_id: uuid.UUID, route_id: int) -> bool:
    return DeadLetter.objects.filter(event_id=event_id).exists() or Invoice.objects.filter(route_id=route_id).exists()


def test_two_customers_routes_on_one_truck_never_wait_for_each_other() -> None:
    truck = TruckFactory()
    unbilled, billed = CustomerFactory(name="Nobody Yet"), CustomerFactory(name="Ege Foods")
    BillingAccountFactory(customer_id=billed.pk, name=billed.name)
    failing = calculated_route(truck=truck, customer=unbilled)  # first on the truck: its customer has no account
    invoiced = calculated_route(truck=truck, customer=billed)
    drain_in_process()

    failing_event, invoiced_event = route_event_id(failing.pk), route_event_id(invoiced.pk)
    consume_invoicing(lambda: DeadLetter.objects.filter(event_id=failing_event).exists()
                      and in_ledger_or_invoiced(invoiced_event, invoiced.pk))

    head = DeadLetter.objects.get(event_id=failing_event)
    assert (head.reason, head.blocked_by) == (DeadLetter.Reason.NON_RETRYABLE, None)
    assert not DeadLetter.objects.filter(event_id=invoiced_event).exists(), "the other customer's route waited"
    assert Invoice.objects.get(route_id=invoiced.pk).customer_id == billed.pk
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", password="pw"))

    def route_page(route_id: int) -> str:
        return superuser.get(f"/admin/routing/route/{route_id}/change/").content.decode()

    assert "Invoicing of this route failed" not in route_page(invoiced.pk)
    assert "Invoicing of this route failed" in route_page(failing.pk)


def test_a_dead_letter_for_a_route_on_truck_5_does_not_park_a_change_of_customer_5() -> None:
    customer = customer_create(name="Ege Foods")
    truck = TruckFactory(pk=customer.pk)  # the truck and the customer share a number
    with connection.cursor() as cursor:  # the next truck the factories make must not take that number again
        cursor.execute("SELECT setval(pg_get_serial_sequence('routing_truck', 'id'), max(id)) FROM routing_truck")
    calculated_route(truck=truck, customer=CustomerFactory(name="Nobody Yet"))  # no billing account: dead letter
    customer_update(customer=customer, data={"name": "Ege Foods A.S."})
    drain_in_process()
    route_event = OutboxEvent.objects.get(event_type=RouteCalculated.ce_type()).event_id
    renamed = OutboxEvent.objects.filter(event_type=CustomerUpserted.ce_type(), payload__contains='"revision":2')
    renamed_event = renamed.get().event_id

    consume_invoicing(lambda: DeadLetter.objects.filter(event_id=route_event).exists() and (
        KnownCustomer.objects.filter(pk=customer.pk, revision=2).exists()
        or DeadLetter.objects.filter(event_id=renamed_event).exists()
    ))

    assert not DeadLetter.objects.filter(event_id=renamed_event).exists(), "customer 5's change waited for truck 5"
    assert KnownCustomer.objects.get(pk=customer.pk).name == "Ege Foods A.S."


def test_a_routes_later_calculation_still_waits_behind_its_own_dead_letter_whatever_the_key_format() -> None:
    """The guarantee kept, across a rolling deploy: the first calculation was published by an older release
    (the bare truck number as key), the recalculation by this one (`truck:<id>`); both are the route's."""
    route_id, truck_id = FIRST_ROUTE + 7000, 77
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))
    first = three_stop_route(route_id=route_id, truck_id=truck_id, customer_id=9700, customer_name="Nobody Yet")
    head_event = producer.event(first, key=str(truck_id).encode(), partition=0)
    later_event = producer.event(first.model_copy(update={"calculation": 2}), key=f"truck:{truck_id}".encode(),
                                 partition=0)
    producer.flush()

    consume_invoicing(lambda: DeadLetter.objects.filter(event_id__in=[head_event, later_event]).count() == 2
                      or Invoice.objects.filter(route_id=route_id).exists())

    head = DeadLetter.objects.get(event_id=head_event)
    later = DeadLetter.objects.get(event_id=later_event)
    assert (head.reason, later.reason, later.blocked_by_id) == (
        DeadLetter.Reason.NON_RETRYABLE, DeadLetter.Reason.PARKED, head.pk,
    )
    assert head.scope == later.scope == f"route:{route_id}".encode()
