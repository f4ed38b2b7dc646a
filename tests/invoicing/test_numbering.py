"""Invoice numbers: unique and gapless per year, even with several writers issuing at the same time; issue times
that follow the numbers; room for a year's millionth invoice; a bounded share of PostgreSQL's lock table."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.contracts import InvoiceGenerated
from apps.invoicing.models import NUMBER_ORDER, Invoice, InvoiceNumberCounter
from apps.invoicing.services.issuing import RouteToInvoice, invoice_issue_for_route, invoice_issue_for_routes
from apps.outbox.models import OutboxEvent
from tests.invoicing.factories import BillingAccountFactory, three_stop_route
from tests.support.locks import race_on_lock

WRITERS = 6
INVOICES_PER_WRITER = 8


def issue_from_parallel_connections(issue: Callable[[int], list], writers: int = WRITERS) -> list:
    """Run `issue(writer)` for every writer at once, each thread on its own database connection: real
    concurrent transactions on the counter row. Returns what they returned (e.g. every number issued)."""
    for customer_id in range(1, writers + 1):
        BillingAccountFactory(customer_id=customer_id)
    start = threading.Barrier(writers)

    def run(writer: int) -> list[str]:
        try:
            start.wait()
            return issue(writer)
        finally:
            connection.close()

    with ThreadPoolExecutor(writers) as pool:
        return [number for numbers in pool.map(run, range(1, writers + 1)) for number in numbers]


def assert_gapless(issued: list[str]) -> None:
    total = WRITERS * INVOICES_PER_WRITER
    assert len(set(issued)) == total
    assert sorted(int(number[-6:]) for number in issued) == list(range(1, total + 1))
    assert Invoice.objects.count() == total


@pytest.mark.django_db(transaction=True)
def test_parallel_connections_issue_consecutive_numbers_without_duplicates() -> None:
    def issue(writer: int) -> list[str]:
        return [
            invoice_issue_for_route(
                route=three_stop_route(route_id=writer * 1000 + i, customer_id=writer, truck_id=writer)
            ).number
            for i in range(INVOICES_PER_WRITER)
        ]

    assert_gapless(issue_from_parallel_connections(issue))


@pytest.mark.django_db(transaction=True)
def test_parallel_batches_and_single_issues_share_one_gapless_sequence() -> None:
    def issue(writer: int) -> list[str]:
        numbers: list[str] = []
        for batch in range(INVOICES_PER_WRITER // 4):
            routes = [
                three_stop_route(route_id=writer * 1000 + batch * 4 + i, customer_id=writer, truck_id=writer)
                for i in range(4)
            ]
            if writer % 2:  # odd writers issue whole batches, even ones route by route
                numbers += [i.number for i in invoice_issue_for_routes(routes=[RouteToInvoice(r) for r in routes])]
            else:
                numbers += [invoice_issue_for_route(route=route).number for route in routes]
        return numbers

    assert_gapless(issue_from_parallel_connections(issue))


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_issue_leaves_no_gap() -> None:
    BillingAccountFactory()
    first = invoice_issue_for_route(route=three_stop_route(route_id=1))
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_issue_for_route(route=three_stop_route(route_id=2))
        raise RuntimeError("rolled back after the number was taken")
    second = invoice_issue_for_route(route=three_stop_route(route_id=3))

    assert [first.number[-6:], second.number[-6:]] == ["000001", "000002"]


@pytest.mark.django_db
def test_numbers_carry_the_year_of_issue() -> None:
    BillingAccountFactory()
    invoice = invoice_issue_for_route(route=three_stop_route(route_id=1))
    assert invoice.number == f"LF-{invoice.issued_at.year:04d}-000001"


@pytest.mark.django_db(transaction=True)
def test_an_invoice_numbered_after_another_never_carries_an_earlier_issue_time() -> None:
    """Route 2 starts issuing while another transaction owns the counter, which then issues route 3 and
    commits; route 2 gets the next number, so its issue time must not be earlier than route 3's."""
    BillingAccountFactory()
    errors = race_on_lock(
        hold=lambda: invoice_issue_for_route(route=three_stop_route(route_id=1)),
        then=lambda: invoice_issue_for_route(route=three_stop_route(route_id=2)),
        before_commit=lambda: invoice_issue_for_route(route=three_stop_route(route_id=3)),
    )

    assert not errors
    issued = list(Invoice.objects.order_by(NUMBER_ORDER).values_list("route_id", "issued_at"))
    assert [route_id for route_id, _ in issued] == [1, 3, 2]
    times = [issued_at for _, issued_at in issued]
    assert times == sorted(times)


@pytest.mark.django_db
def test_an_invoice_issued_as_the_year_turns_is_numbered_in_the_year_of_its_issue_time() -> None:
    """The clock read before the counter's lock says 31 December; the issue time (read under the lock) is
    in the new year, and so is the number; the old year's counter gives its number back."""
    BillingAccountFactory()
    last_year = timezone.now().year - 1
    with mock.patch("django.utils.timezone.now", return_value=datetime(last_year, 12, 31, 23, 59, 59, tzinfo=UTC)):
        invoice = invoice_issue_for_route(route=three_stop_route(route_id=1))

    assert invoice.issued_at.year == last_year + 1
    assert invoice.number == f"LF-{last_year + 1}-000001"
    assert not InvoiceNumberCounter.objects.filter(year=last_year, last_number__gt=0).exists()


@pytest.mark.django_db
def test_the_millionth_invoice_of_a_year_is_issued_and_sorts_after_the_999999th() -> None:
    BillingAccountFactory()
    year = timezone.now().year
    InvoiceNumberCounter.objects.create(year=year, last_number=999_998)

    batch = invoice_issue_for_routes(routes=[RouteToInvoice(three_stop_route(route_id=r)) for r in (1, 2)])
    single = invoice_issue_for_route(route=three_stop_route(route_id=3))

    expected = [f"LF-{year}-999999", f"LF-{year}-1000000", f"LF-{year}-1000001"]
    assert [invoice.number for invoice in [*batch, single]] == expected
    assert list(Invoice.objects.order_by(NUMBER_ORDER).values_list("number", flat=True)) == expected
    events = OutboxEvent.objects.filter(event_type=InvoiceGenerated.ce_type()).order_by("id")
    assert [json.loads(event.payload)["number"] for event in events] == expected


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_default_size_batches_stay_within_their_share_of_the_lock_table() -> None:
    """PostgreSQL's shared lock table has room for max_locks_per_transaction entries per connection (64 by
    default); a transaction that takes far more than its share leaves a few consumers one step from "out of
    shared memory". A batch's share: one lock per published key (the outbox's per-key order), plus at most
    max_locks_per_transaction of its own, however many routes it issues."""
    size = settings.CONSUMER_BATCH_SIZE
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_locks_per_transaction")
        share = int(cursor.fetchone()[0])

    def issue(writer: int) -> list[int]:
        routes = [
            RouteToInvoice(three_stop_route(route_id=writer * 100_000 + i, customer_id=writer, truck_id=writer))
            for i in range(size)
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            invoices = invoice_issue_for_routes(routes=routes)
            # Fast-path relation locks live in the backend, not in the shared table.
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND NOT fastpath")
            return [cursor.fetchone()[0] - len(invoices)]

    beyond_published_keys = issue_from_parallel_connections(issue, writers=2)

    assert all(entries <= share for entries in beyond_published_keys), beyond_published_keys
    numbers = Invoice.objects.values_list("number", flat=True)
    assert sorted(int(number.rsplit("-", 1)[1]) for number in numbers) == list(range(1, 2 * size + 1))
